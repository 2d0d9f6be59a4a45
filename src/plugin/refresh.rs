//! `kubectl consent refresh`: the `consent.dev/refresh-requested-at` annotation, set at a capped
//! rate, then the operator's answer for each object (`status.refreshRequestedAt`).

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::PluginError;
use crate::api::annotations::REFRESH_REQUESTED_AT;
use crate::api::crd::ConsentToken;

/// How one refresh request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A new token is in the Secret.
    Refreshed,
    /// The operator acted and did not get a new token; the Ready reason says why.
    NotRefreshed { reason: String, message: String },
    /// No answer within the timeout (or not waited for).
    Unanswered,
}

pub async fn refresh(
    client: &Client,
    tokens: &[ConsentToken],
    rate: f64,
    timeout: Duration,
    out: &mut impl std::io::Write,
) -> Result<(), PluginError> {
    if tokens.is_empty() {
        return Err(PluginError::Failed("no ConsentTokens matched".into()));
    }
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut requested = Vec::new();
    for (i, ct) in tokens.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let api: Api<ConsentToken> = Api::namespaced(client.clone(), &ct.namespace().unwrap_or_default());
        // A new value each time: the operator acts once per value.
        let value = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {REFRESH_REQUESTED_AT: value}}});
        api.patch(&ct.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        requested.push((api, ct.name_any(), ct.namespace().unwrap_or_default(), value));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut failed = 0usize;
    for (api, name, namespace, value) in requested {
        let answer = wait_for_answer(&api, &name, &value, deadline).await?;
        let line = match &answer {
            Answer::Refreshed => format!("{namespace}/{name}: refreshed"),
            Answer::NotRefreshed { reason, message } => {
                format!("{namespace}/{name}: not refreshed: {reason}: {message}")
            }
            Answer::Unanswered if timeout.is_zero() => format!("{namespace}/{name}: requested"),
            Answer::Unanswered => format!("{namespace}/{name}: no answer from the operator within {timeout:?}"),
        };
        if answer != Answer::Refreshed && !(answer == Answer::Unanswered && timeout.is_zero()) {
            failed = failed.saturating_add(1);
        }
        writeln!(out, "{line}").map_err(|e| PluginError::Failed(format!("cannot write the output: {e}")))?;
    }
    match failed {
        0 => Ok(()),
        n => Err(PluginError::Failed(format!("{n} of {} ConsentTokens not refreshed", tokens.len()))),
    }
}

async fn wait_for_answer(
    api: &Api<ConsentToken>,
    name: &str,
    value: &str,
    deadline: tokio::time::Instant,
) -> Result<Answer, PluginError> {
    loop {
        let ct = api.get(name).await?;
        if let Some(answer) = answer(&ct, value) {
            return Ok(answer);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Answer::Unanswered);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The operator's answer to request `value`, once its status has one. The operator records a
/// request as handled once it fetched a new token for it (no failures since) or failed to.
pub fn answer(ct: &ConsentToken, value: &str) -> Option<Answer> {
    let status = ct.status.as_ref()?;
    if status.refresh_requested_at.as_deref() != Some(value) {
        return None;
    }
    if status.consecutive_failures == 0 {
        return Some(Answer::Refreshed);
    }
    let ready = crate::reconcile::status::ready_condition(status);
    Some(Answer::NotRefreshed {
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_answer_is_read_from_the_status_of_that_request() {
        let mut ct = fixtures::fdx_consent_token("https://consent.bank.example");
        assert_eq!(answer(&ct, "t1"), None, "no status yet");
        let status = ct.status.get_or_insert_with(Default::default);
        status.refresh_requested_at = Some("t0".into());
        assert_eq!(answer(&ct, "t1"), None, "an older request's answer");
        ct.status.as_mut().unwrap().refresh_requested_at = Some("t1".into());
        assert_eq!(answer(&ct, "t1"), Some(Answer::Refreshed));
        ct.status.as_mut().unwrap().consecutive_failures = 1;
        assert!(matches!(answer(&ct, "t1"), Some(Answer::NotRefreshed { .. })));
    }
}
