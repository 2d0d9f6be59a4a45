//! Fetching a new token and writing it: credentials, provider, target Secret. A failure at any
//! step leaves the Secret as it was, so the last good token stays where pods read it.

use kube::{Resource, ResourceExt};

use super::Context;
use super::secret::{self, Target};
use crate::crd::ConsentToken;
use crate::error::Error;
use crate::spec::ValidSpec;
use crate::target_secret::{self, TokenRecord};

/// Fetches a token for `ct` and writes it into its Secret. `credentials_version`: the version of
/// the credentials Secret a change was seen to, if that is why this reconcile runs.
pub async fn refresh(
    ct: &ConsentToken,
    ctx: &Context,
    spec: &ValidSpec<'_>,
    target: &Target,
    credentials_version: Option<&str>,
) -> Result<TokenRecord, Error> {
    let namespace = ct.namespace().unwrap_or_default();
    let host = spec.source.host();
    let credentials = ctx.credentials.get(&ctx.client, &namespace, spec.credentials, credentials_version, host).await?;
    let fetched = ctx.providers.fetch(&spec.source, &credentials).await?;
    let first = !matches!(target, Target::Ours(_));
    let (earliest, latest) = spec.schedule.renewal_window(fetched.fetched_at, fetched.expires_at, first);
    let record = TokenRecord {
        fingerprint: fetched.token.fingerprint(),
        refreshed_at: fetched.fetched_at,
        expires_at: fetched.expires_at,
        next_refresh_at: ctx.calendar.place(&ct.uid().unwrap_or_default(), earliest, latest),
        generation: ct.meta().generation.unwrap_or_default(),
        credentials_version: credentials.version.clone(),
        collection_point_version: fetched.collection_point_version,
    };
    secret::write(ct, ctx, target, &target_secret::desired(ct, &fetched.token, &record)).await?;
    Ok(record)
}
