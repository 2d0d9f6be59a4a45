//! The monitoring bundle: the chart's alerts pass Prometheus's own rule unit tests (promtool,
//! built from the Prometheus module like the control plane), and every metric the alerts and
//! the Grafana dashboard ask for is one the operator really exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use consent_token_operator::api::crd::ConsentProvider;
use fake_provider::{Endpoint, Fault};
use kube::Api;
use kube::api::PostParams;
use support::chart::{FULLNAME, document, render};
use support::operator::TestEnv;

const ALERT_TESTS: &str = "tests/alerts/consent-token-operator.test.yaml";
const DASHBOARD: &str = "charts/consent-token-operator/dashboards/consent-token-operator.json";

/// The rule groups of the chart's PrometheusRule, rendered with its default values for release
/// `cto` in `namespace`, as a Prometheus rules file.
fn rendered_rules(namespace: &str) -> String {
    let rendered = render(namespace, &["metrics.prometheusRule.enabled=true"]);
    let rule: serde_yaml::Value = serde_yaml::from_str(&document(&rendered, "PrometheusRule", FULLNAME)).unwrap();
    serde_yaml::to_string(&rule["spec"]).unwrap()
}

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let path =
        Command::new(support::repo_root().join("scripts/control-plane")).args(["bin", "promtool"]).output().unwrap();
    let output =
        Command::new(String::from_utf8(path.stdout).unwrap().trim()).args(args).current_dir(dir).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

/// Names of the metrics a PromQL text asks for.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["consent_token_", "process_"] {
        for (at, _) in promql.match_indices(prefix) {
            let before = promql[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = promql[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

#[test]
fn the_alerts_pass_their_promtool_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rendered_rules("cto");
    std::fs::write(dir.path().join("rules.yaml"), &rules).unwrap();
    // A second installation of the same release in another namespace, with its own alerts.
    std::fs::write(dir.path().join("rules-other.yaml"), rendered_rules("other")).unwrap();
    let tests = std::fs::read_to_string(support::repo_root().join(ALERT_TESTS)).unwrap();
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).unwrap();
    promtool(&["check", "rules", "rules.yaml"], dir.path());
    let said = promtool(&["test", "rules", "alerts.test.yaml"], dir.path());
    assert!(said.contains("SUCCESS"), "{said}");

    // Every alert is tested, firing at least once.
    let alerts: Vec<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    for alert in alerts {
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(&format!("{alert}\n")) && case.contains("exp_labels"));
        assert!(firing, "{alert} has no test in which it fires");
    }
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_ask_only_for_metrics_the_operator_exports() {
    // An operator that has refreshed a token, been refused with 429 and held a request back:
    // every family has at least one series.
    let env = TestEnv::start("monitoring").await;
    env.fdx_token("mx", "monitoring-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::RateLimited { retry_after: "3600".into() }, None);
    env.request_refresh("mx").await;
    env.wait_for_ready("mx", "True", "RateLimited").await;
    // A refresh asked for during the wait is held back: a rate-limit wait.
    env.refresh_and_wait_handled("mx").await;
    // A ConsentProvider whose credentials Secret does not exist: not Ready, and so a series.
    let provider: ConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentProvider", "metadata": {"name": "bank"},
        "spec": {"fdx": {"baseUrl": env.fake.base_url(), "credentialsSecretRef": {"name": "no-such-secret"}}}
    }))
    .unwrap();
    Api::<ConsentProvider>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let not_ready = format!(
        "consent_token_provider_ready{{kind=\"ConsentProvider\",namespace=\"{}\",name=\"bank\",provider=\"FDX\",reason=\"CredentialsNotFound\"}} 0",
        env.namespace
    );
    let exported = support::eventually("the provider's readiness series", Duration::from_secs(30), || async {
        let exported = env.operator.metrics().await;
        exported.contains(&not_ready).then_some(exported)
    })
    .await;
    let has = |name: &str| {
        exported.lines().any(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix("_bucket").or(Some(rest)))
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
    };
    assert!(exported.contains(&format!(
        "consent_token_consecutive_failures{{namespace=\"{}\",name=\"mx\",provider=\"FDX\",reason=\"RateLimited\"}} ",
        env.namespace
    )));

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(support::repo_root().join(DASHBOARD)).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            queries.push(variable["query"].as_str().unwrap().to_owned());
        }
    }
    let rules = rendered_rules("cto");
    let asked: BTreeSet<String> =
        queries.iter().map(String::as_str).chain([rules.as_str()]).flat_map(metric_names).collect();
    assert!(asked.len() >= 10, "{asked:?}");
    let missing: Vec<&String> = asked.iter().filter(|name| !has(name)).collect();
    assert!(missing.is_empty(), "asked for but not exported: {missing:?}\n{exported}");
}
