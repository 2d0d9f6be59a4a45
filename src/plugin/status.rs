//! `kubectl consent status`: one line per ConsentToken, from its status and its target
//! Secret's annotations.
//!
//! While tokens are renewed on time, the operator does not rewrite the status for each new token:
//! the token's expiry and next renewal are on the target Secret (written with the token), so
//! this reads the Secrets' metadata too (never their data). Without permission to read them,
//! the times come from the status alone, which has them only while a refresh fails.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::{PluginError, relative};
use crate::api::annotations::{EXPIRES_AT, FINGERPRINT, MANAGED_SELECTOR, NEXT_REFRESH_AT};
use crate::api::crd::ConsentToken;
use crate::reconcile::status;

/// What a target Secret's annotations say about the token in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub expires_at: Option<Timestamp>,
    pub next_refresh_at: Option<Timestamp>,
    pub holds_a_token: bool,
}

impl Live {
    fn of(meta: &ObjectMeta) -> Self {
        let annotations = meta.annotations.as_ref();
        let time = |name: &str| annotations.and_then(|a| a.get(name)).and_then(|v| v.parse().ok());
        Self {
            expires_at: time(EXPIRES_AT),
            next_refresh_at: time(NEXT_REFRESH_AT),
            holds_a_token: annotations.is_some_and(|a| a.contains_key(FINGERPRINT)),
        }
    }
}

/// The target Secrets' annotations by (namespace, Secret name), or `None` when the user may not
/// read Secrets.
pub async fn live(
    client: &Client,
    tokens: &[ConsentToken],
) -> Result<Option<HashMap<(String, String), Live>>, PluginError> {
    let namespaces: std::collections::BTreeSet<String> = tokens.iter().filter_map(|t| t.namespace()).collect();
    let api: Api<Secret> = match namespaces.iter().next() {
        // No ConsentTokens: nothing to look up (and no list of every namespace's Secrets).
        None => return Ok(Some(HashMap::new())),
        Some(only) if namespaces.len() == 1 => Api::namespaced(client.clone(), only),
        Some(_) => Api::all(client.clone()),
    };
    match api.list_metadata(&ListParams::default().labels(MANAGED_SELECTOR)).await {
        Ok(list) => Ok(Some(
            list.items
                .iter()
                .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), Live::of(&s.metadata)))
                .collect(),
        )),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The table, with a NAMESPACE column when it spans namespaces. Times are relative to `now`.
pub fn table(
    tokens: &[ConsentToken],
    live: Option<&HashMap<(String, String), Live>>,
    now: Timestamp,
    columns: Columns,
) -> String {
    if tokens.is_empty() {
        return "No ConsentTokens found.\n".into();
    }
    let mut rows = vec![header(columns)];
    rows.extend(tokens.iter().map(|ct| {
        let key = (ct.namespace().unwrap_or_default(), ct.target_secret_name());
        row(ct, live.and_then(|live| live.get(&key)).unwrap_or(&Live::default()), now, columns)
    }));
    let mut out = aligned(&rows);
    if live.is_none() {
        out.push_str(
            "(you may not read Secrets here: EXPIRES and NEXT REFRESH are shown only while a refresh fails)\n",
        );
    }
    out
}

/// Rows as kubectl prints a table: each column as wide as its widest cell, three spaces apart,
/// the last one as it is.
pub fn aligned<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> =
        (0..columns).map(|column| rows.iter().map(|r| r.as_ref()[column].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let row = row.as_ref();
        let last = row.len().saturating_sub(1);
        for (column, cell) in row.iter().enumerate() {
            if column == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   ", width = widths[column]));
            }
        }
        out.push('\n');
    }
    out
}

/// Which columns the table has besides the usual ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Columns {
    /// NAMESPACE first (`-A`).
    pub namespace: bool,
    /// SECRET and FAILURES before MESSAGE (`-o wide`).
    pub wide: bool,
}

fn header(columns: Columns) -> Vec<String> {
    let mut header = vec!["NAME", "PROVIDER", "READY", "REASON", "LIFETIME", "EXPIRES", "NEXT REFRESH"];
    if columns.wide {
        header.extend(["SECRET", "FAILURES"]);
    }
    header.push("MESSAGE");
    if columns.namespace {
        header.insert(0, "NAMESPACE");
    }
    header.into_iter().map(String::from).collect()
}

/// `live` is the target Secret's annotations (empty where not readable). The status' times,
/// where it has them (a failing refresh: the retry time), come first.
fn row(ct: &ConsentToken, live: &Live, now: Timestamp, columns: Columns) -> Vec<String> {
    let status = ct.status.as_ref();
    let condition = status.and_then(status::ready_condition);
    let when = |at: Option<Timestamp>| at.map_or_else(|| "-".to_owned(), |at| relative(at.as_second(), now));
    let status_expiry = status.and_then(|s| s.expires_at.as_ref()).map(|t| t.0);
    let holds_a_token = live.holds_a_token || status.is_some_and(|s| s.token_fingerprint.is_some());
    let expires = match (status_expiry.or(live.expires_at), holds_a_token) {
        (Some(exp), _) => when(Some(exp)),
        (None, true) => "never".into(),
        (None, false) => "-".into(),
    };
    let next = status.and_then(|s| s.next_refresh_time.as_ref()).map(|t| t.0).or(live.next_refresh_at);
    let mut row = vec![
        ct.name_any(),
        status.and_then(|s| s.provider.clone()).unwrap_or_else(|| "-".into()),
        condition.map_or("Unknown".into(), |c| c.status.clone()),
        condition.map_or("-".into(), |c| c.reason.clone()),
        status.and_then(|s| s.token_lifetime.clone()).unwrap_or_else(|| "-".into()),
        expires,
        when(next),
    ];
    if columns.wide {
        row.push(ct.target_secret_name());
        row.push(status.map_or(0, |s| s.consecutive_failures).to_string());
    }
    row.push(condition.map_or(String::new(), |c| c.message.clone()));
    if columns.namespace {
        row.insert(0, ct.namespace().unwrap_or_default());
    }
    row
}

/// `-o json` / `-o yaml`: the ConsentTokens as a `List`, as `kubectl get -o json` prints them
/// (without managed fields).
pub fn list(tokens: &[ConsentToken]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = tokens
        .iter()
        .map(|ct| {
            let mut ct = ct.clone();
            ct.metadata.managed_fields = None;
            serde_json::to_value(&ct).unwrap_or_default()
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use crate::fixtures;

    /// `exp` and `next` as a status shows them (only where it describes a failing or expired token).
    fn with_status(name: &str, reason: &str, ready: &str, exp: Option<i64>, next: Option<i64>) -> ConsentToken {
        let mut ct = fixtures::fdx_consent_token("https://consent.bank.example");
        ct.metadata.name = Some(name.into());
        ct.metadata.namespace = Some("default".into());
        ct.spec.target.secret_name = Some(format!("{name}-token"));
        let status = ct.status.get_or_insert_with(Default::default);
        status.provider = Some("FDX".into());
        status.conditions = vec![Condition {
            type_: "Ready".into(),
            status: ready.into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            last_transition_time: Time(Timestamp::from_second(0).unwrap()),
            observed_generation: None,
        }];
        status.expires_at = exp.map(|s| Time(Timestamp::from_second(s).unwrap()));
        status.token_fingerprint = exp.map(|_| "sha256:0011223344556677".into());
        status.next_refresh_time = next.map(|s| Time(Timestamp::from_second(s).unwrap()));
        ct
    }

    fn live(exp: Option<i64>, next: i64) -> Live {
        Live {
            expires_at: exp.map(|s| Timestamp::from_second(s).unwrap()),
            next_refresh_at: Some(Timestamp::from_second(next).unwrap()),
            holds_a_token: true,
        }
    }

    #[test]
    fn a_row_per_token_with_relative_times_from_the_secrets() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let tokens = [
            with_status("alice", "TokenValid", "True", None, None),
            with_status("bob", "Expired", "False", Some(999_000), Some(999_990)),
            with_status("carol", "TokenValid", "True", None, None),
        ];
        let secret = |name: &str| ("default".to_owned(), format!("{name}-token"));
        let secrets = HashMap::from([
            (secret("alice"), live(Some(1_000_250), 1_000_100)),
            (secret("bob"), live(Some(999_000), 999_500)),
            (secret("carol"), live(None, 1_003_600)),
        ]);
        let table = table(&tokens, Some(&secrets), now, Columns::default());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME ") && lines[0].ends_with("MESSAGE"), "{table}");
        assert!(
            lines[1].contains("alice") && lines[1].contains("in 4m10s") && lines[1].contains("in 1m40s"),
            "{table}"
        );
        assert!(lines[2].contains("16m40s ago") && lines[2].contains("Expired message"), "{table}");
        assert!(lines[2].contains("10s ago"), "the status' retry time comes first: {table}");
        assert!(lines[3].contains("never") && lines[3].contains("in 1h0m"), "{table}");
        // Columns line up.
        let at = lines[0].find("PROVIDER").unwrap();
        assert!(lines.iter().skip(1).all(|l| &l[at..at + 3] == "FDX"), "{table}");
        let all = Columns { namespace: true, ..Columns::default() };
        assert!(super::table(&tokens, Some(&secrets), now, all).starts_with("NAMESPACE"));
        let wide = super::table(&tokens, Some(&secrets), now, Columns { wide: true, ..Columns::default() });
        let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header[header.len() - 4..], ["REFRESH", "SECRET", "FAILURES", "MESSAGE"][..], "{wide}");
        assert_eq!(super::table(&[], None, now, Columns::default()), "No ConsentTokens found.\n");
    }

    #[test]
    fn without_the_secrets_the_times_come_from_the_status_and_the_table_says_so() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let tokens = [with_status("alice", "TokenValid", "True", None, None)];
        let table = table(&tokens, None, now, Columns::default());
        assert!(table.lines().nth(1).unwrap().contains("-   "), "{table}");
        assert!(table.contains("you may not read Secrets"), "{table}");
    }
}
