//! `kubectl consent status`: one line per ConsentToken, read from its status.

use jiff::Timestamp;
use kube::ResourceExt;

use super::relative;
use crate::api::crd::ConsentToken;
use crate::reconcile::status;

/// The table, with a NAMESPACE column when it spans namespaces. Times are relative to `now`.
pub fn table(tokens: &[ConsentToken], now: Timestamp, with_namespace: bool) -> String {
    if tokens.is_empty() {
        return "No ConsentTokens found.\n".into();
    }
    let mut rows = vec![header(with_namespace)];
    rows.extend(tokens.iter().map(|ct| row(ct, now, with_namespace)));
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|column| rows.iter().map(|r| r[column].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
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

fn header(with_namespace: bool) -> Vec<String> {
    let mut header = vec!["NAME", "PROVIDER", "READY", "REASON", "EXPIRES", "NEXT REFRESH", "MESSAGE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    header.into_iter().map(String::from).collect()
}

fn row(ct: &ConsentToken, now: Timestamp, with_namespace: bool) -> Vec<String> {
    let status = ct.status.as_ref();
    let condition = status.and_then(status::ready_condition);
    let when = |at: Option<Timestamp>| at.map_or_else(|| "-".to_owned(), |at| relative(at.as_second(), now));
    let expires = match (status.and_then(|s| s.expires_at.as_ref()), status.and_then(|s| s.token_fingerprint.as_ref()))
    {
        (Some(exp), _) => when(Some(exp.0)),
        (None, Some(_)) => "never".into(),
        (None, None) => "-".into(),
    };
    let mut row = vec![
        ct.name_any(),
        status.and_then(|s| s.provider.clone()).unwrap_or_else(|| "-".into()),
        condition.map_or("Unknown".into(), |c| c.status.clone()),
        condition.map_or("-".into(), |c| c.reason.clone()),
        expires,
        when(status.and_then(|s| s.next_refresh_time.as_ref()).map(|t| t.0)),
        condition.map_or(String::new(), |c| c.message.clone()),
    ];
    if with_namespace {
        row.insert(0, ct.namespace().unwrap_or_default());
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use crate::fixtures;

    fn with_status(name: &str, reason: &str, ready: &str, exp: Option<i64>, next: i64) -> ConsentToken {
        let mut ct = fixtures::fdx_consent_token("https://consent.bank.example");
        ct.metadata.name = Some(name.into());
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
        status.token_fingerprint = Some("sha256:0011223344556677".into());
        status.next_refresh_time = Some(Time(Timestamp::from_second(next).unwrap()));
        ct
    }

    #[test]
    fn a_row_per_token_with_relative_times() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let tokens = [
            with_status("alice", "TokenValid", "True", Some(1_000_250), 1_000_100),
            with_status("bob", "Expired", "False", Some(999_000), 999_990),
            with_status("carol", "TokenValid", "True", None, 1_003_600),
        ];
        let table = table(&tokens, now, false);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME ") && lines[0].ends_with("MESSAGE"), "{table}");
        assert!(
            lines[1].contains("alice") && lines[1].contains("in 4m10s") && lines[1].contains("in 1m40s"),
            "{table}"
        );
        assert!(lines[2].contains("16m40s ago") && lines[2].contains("Expired message"), "{table}");
        assert!(lines[3].contains("never") && lines[3].contains("in 1h0m"), "{table}");
        // Columns line up.
        let at = lines[0].find("PROVIDER").unwrap();
        assert!(lines.iter().skip(1).all(|l| &l[at..at + 3] == "FDX"), "{table}");
        assert!(super::table(&tokens, now, true).starts_with("NAMESPACE"));
        assert_eq!(super::table(&[], now, false), "No ConsentTokens found.\n");
    }
}
