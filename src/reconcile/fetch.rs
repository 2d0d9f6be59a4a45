//! Fetching a new token and writing it: credentials, provider, target Secret. A failure at any
//! step leaves the Secret as it was, so the last good token stays where pods read it.

use std::time::Duration;

use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::crd::ConsentToken;
use crate::error::Error;
use crate::provider::credentials::Destination;
use crate::reconcile::context::Context;
use crate::reconcile::secret::{self, Target};
use crate::reconcile::spec::ValidSpec;
use crate::reconcile::target_secret;
use crate::reconcile::token_record::TokenRecord;
use crate::reconcile::unwritten::Unwritten;

/// What a token is fetched for, and against what it is judged.
pub struct Refresh<'a> {
    pub spec: &'a ValidSpec,
    pub target: &'a Target,
    /// The token in the Secret, if any.
    pub current: Option<&'a TokenRecord>,
    pub replace: Replace,
    /// The version of the credentials Secret a change was seen to, if that is why this
    /// reconcile runs.
    pub credentials_version: Option<&'a str>,
}

/// Whether a new token replaces the current one even if it expires sooner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Routine: a new token that expires before the current one (not due yet) is refused.
    UnlessShorterLived,
    /// The spec or the credentials changed: the current token is not what is asked for any more.
    Anyway,
}

/// Fetches a token for `ct` and writes it into its Secret, unless it is not worth writing (see
/// [`worth_writing`]).
pub async fn refresh(ct: &ConsentToken, ctx: &Context, refresh: &Refresh<'_>) -> Result<TokenRecord, Error> {
    let Refresh { spec, target, current, replace, credentials_version } = *refresh;
    let uid = ct.uid().unwrap_or_default();
    // A token fetched by an earlier attempt whose write failed, if still good to write.
    let kept = ctx.records.unwritten.take(&uid, &spec.request, credentials_version).filter(|kept| {
        let now = jiff::Timestamp::now();
        worth_writing(now, kept.fetched.expires_at, current, replace, ctx.scheduling.min_token_lifetime).is_ok()
    });
    let (fetched, credentials_version) = match kept {
        Some(kept) => {
            tracing::debug!(
                namespace = ct.namespace(),
                name = ct.name_any(),
                "writing the token an earlier attempt fetched"
            );
            (kept.fetched, kept.credentials_version)
        }
        None => {
            let location = &spec.credentials;
            let asked_by = format!("ConsentToken {}/{}", ct.namespace().unwrap_or_default(), ct.name_any());
            // Held while the provider is asked: this namespace's share of requests under way.
            let namespace = ct.namespace().unwrap_or_default();
            let _slot = ctx.upstream.namespace_slots.take(&namespace)?;
            let to = Destination { host: spec.source.host(), port: spec.source.port(), asked_by: &asked_by };
            let credentials = ctx
                .upstream
                .credentials
                .get(&ctx.kube.client, &location.namespace, &location.reference, credentials_version, to)
                .await?;
            match ctx.upstream.providers.fetch(&spec.source, &credentials, &namespace).await {
                Ok(fetched) => {
                    if let Some(ahead) = fetched.provider_clock_ahead {
                        ctx.metrics.clock_skew.observe(spec.provider.as_str(), ahead);
                    }
                    (fetched, credentials.version.clone())
                }
                Err(err) => {
                    if matches!(err, Error::Unauthorized { .. }) {
                        ctx.upstream.credentials.forget(&location.namespace, &location.reference.name);
                    }
                    return Err(err);
                }
            }
        }
    };
    worth_writing(fetched.fetched_at, fetched.expires_at, current, replace, ctx.scheduling.min_token_lifetime)?;
    let first = !matches!(target, Target::Ours(_));
    let (mut earliest, latest) = spec.schedule.renewal_window(fetched.fetched_at, fetched.expires_at, first);
    if first {
        // Not among the first tokens of a fill still under way (see first_tokens).
        earliest = earliest.max(ctx.scheduling.first_tokens.expected_done(&uid, fetched.fetched_at)).min(latest);
    }
    let record = TokenRecord {
        fingerprint: fetched.token.fingerprint(),
        refreshed_at: fetched.fetched_at,
        expires_at: fetched.expires_at,
        next_refresh_at: ctx.scheduling.calendar.place(&uid, earliest, latest),
        generation: ct.meta().generation.unwrap_or_default(),
        credentials_version: credentials_version.clone(),
        collection_point_version: fetched.collection_point_version,
        request: Some(spec.request.clone()),
    };
    if let Err(err) = secret::write(ct, ctx, target, target_secret::desired(ct, &fetched.token, &record)).await {
        if matches!(err, Error::Kube(_)) {
            ctx.records.unwritten.keep(&uid, Unwritten { fetched, request: spec.request.clone(), credentials_version });
        }
        return Err(err);
    }
    tracing::debug!(
        namespace = ct.namespace(),
        name = ct.name_any(),
        fingerprint = record.fingerprint,
        "token written"
    );
    Ok(record)
}

/// Whether a new token may replace what the Secret holds: never one that lives less than
/// `min_lifetime` (it could not reach a mounted volume before it expires), and, unless the spec
/// or the credentials changed, never one that expires before the current token while that one
/// is not due yet (an upstream handing out a nearly expired token must not push out a good one).
pub fn worth_writing(
    now: Timestamp,
    expires_at: Option<Timestamp>,
    current: Option<&TokenRecord>,
    replace: Replace,
    min_lifetime: Duration,
) -> Result<(), Error> {
    let Some(expires_at) = expires_at else { return Ok(()) };
    if crate::basics::time_math::between(now, expires_at) < min_lifetime {
        return Err(Error::InvalidResponse(
            "the new token lives less than the operator's --min-token-lifetime; nothing was written",
        ));
    }
    let shorter_than_current = current.and_then(|c| c.expires_at).is_some_and(|current| expires_at < current);
    let current_due = current.is_some_and(|c| c.next_refresh_at <= now);
    if replace == Replace::UnlessShorterLived && shorter_than_current && !current_due {
        return Err(Error::InvalidResponse(
            "the new token expires before the one in the Secret, which is not due yet; the current one was kept",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, t};

    const MIN: Duration = Duration::from_secs(90);

    #[test]
    fn a_token_too_short_lived_for_the_kubelet_is_never_written() {
        assert!(worth_writing(t(0), Some(t(60)), None, Replace::Anyway, MIN).is_err());
        assert!(worth_writing(t(0), Some(t(90)), None, Replace::UnlessShorterLived, MIN).is_ok());
        assert!(
            worth_writing(t(0), None, None, Replace::UnlessShorterLived, MIN).is_ok(),
            "OneTrust tokens carry no expiry"
        );
    }

    #[test]
    fn a_shorter_lived_token_replaces_the_current_one_only_when_that_is_due_or_outdated() {
        let current = fixtures::record(); // expires t(300), due t(150)
        assert!(
            worth_writing(t(10), Some(t(200)), Some(&current), Replace::UnlessShorterLived, MIN).is_err(),
            "not due, shorter"
        );
        assert!(
            worth_writing(t(10), Some(t(400)), Some(&current), Replace::UnlessShorterLived, MIN).is_ok(),
            "outlives it"
        );
        assert!(worth_writing(t(150), Some(t(280)), Some(&current), Replace::UnlessShorterLived, MIN).is_ok(), "due");
        assert!(worth_writing(t(10), Some(t(200)), Some(&current), Replace::Anyway, MIN).is_ok(), "spec changed");
    }
}
