//! Invalid ConsentTokens are refused by the API server with a message that says what to fix;
//! no token, client secret or customer id ever appears in logs, events, status or metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use support::operator::TestEnv;

/// `kubectl apply` of `spec`; returns what kubectl said on failure.
fn apply_rejected(namespace: &str, spec: serde_json::Value) -> String {
    let manifest = serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
        "metadata": {"name": "invalid", "namespace": namespace}, "spec": spec,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ct.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let output = support::kubectl_output(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!output.status.success(), "accepted: {spec}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn invalid_consent_tokens_are_rejected_with_readable_messages() {
    support::install_crds();
    let client = support::admin_client().await;
    let ns = support::namespace(&client, "invalid").await;
    let creds = serde_json::json!({"name": "creds"});
    let onetrust = |hostname: &str, guid: &str| serde_json::json!({"oneTrust": {"hostname": hostname, "collectionPoint": {"guid": guid}, "credentialsSecretRef": creds}});
    let fdx = |base_url: &str, customer: &str| serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": customer, "credentialsSecretRef": creds}});
    let guid = "123e4567-e89b-12d3-a456-426614174000";
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!({}), "set exactly one provider"),
        (
            serde_json::json!({"oneTrust": onetrust("app.onetrust.com", guid)["oneTrust"], "fdx": fdx("https://x", "c")["fdx"]}),
            "set exactly one provider",
        ),
        (onetrust("https://app.onetrust.com", guid), "hostname must be a bare host name"),
        (onetrust("app.onetrust.com", "not-a-guid"), "guid must be a UUID"),
        (fdx("ftp://bank.example", "c"), "baseUrl must be an absolute URL"),
        (fdx("https://bank.example", "has space"), "customerId must be"),
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "refresh": {"renewBefore": "150"}}),
            "renewBefore must be a percentage",
        ),
        // One object may not spend a shared account's quota on continuous renewals.
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "refresh": {"renewBefore": "99%"}}),
            "renewBefore must be a percentage of the token lifetime from 1% to 90%",
        ),
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "refresh": {"renewBefore": "0s"}}),
            "or a duration of at least 30s",
        ),
        // What the operator copies into a Secret (and keeps in memory) is bounded in all.
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "target": {"annotations":
                (0..5).map(|i| (format!("example.com/a{i}"), serde_json::json!("x".repeat(4000)))).collect::<serde_json::Map<_, _>>()}}),
            "annotations may hold at most 16384 characters in all",
        ),
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "target": {"labels":
                (0..40).map(|i| (format!("example.com/label-{i:02}-{}", "k".repeat(20)), serde_json::json!("v".repeat(63)))).collect::<serde_json::Map<_, _>>()}}),
            "labels may hold at most 4096 characters in all",
        ),
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "refresh": {"interval": "10s"}}),
            "interval must be a duration of at least 1m",
        ),
        (
            serde_json::json!({"fdx": fdx("https://x", "c")["fdx"], "target": {"secretName": "Not_A_Name"}}),
            "secretName must be a Secret name",
        ),
        (
            serde_json::json!({"oneTrust": {"hostname": "h", "credentialsSecretRef": creds,
                "collectionPoint": {"guid": guid, "version": 0, "state": "ACTIV"}}}),
            "Unsupported value: \"ACTIV\"",
        ),
    ];
    for (spec, expected) in cases {
        let message = apply_rejected(&ns, spec.clone());
        assert!(message.contains(expected), "for {spec}: expected {expected:?} in {message}");
    }
    support::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn no_secret_value_or_customer_id_reaches_logs_events_status_or_metrics() {
    let env = TestEnv::start("secrecy").await; // the operator logs at trace level in every test
    let customer = "fN7SsIMfJvJJcNjKBmB6Kg";
    let mx_secret = "mx-secret-value";
    let ot_secret = "ot-secret-value-XYZ";
    env.fdx_token("mx", customer).await;
    env.onetrust_token("cp", ot_secret).await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    // And a failure path, whose messages are the likeliest to leak.
    env.fake.inject(fake_provider::Endpoint::FdxToken, fake_provider::Fault::Status(401), None);
    env.refresh_and_wait_handled("mx").await;
    env.wait_for_ready("mx", "True", "Unauthorized").await;

    let mx_token = env.token_in_secret("mx", "token").await.unwrap();
    let ot_token = env.token_in_secret("cp", "token").await.unwrap();
    // The parts of a JWT are each secret-bearing; the signature alone would do.
    let secrets: Vec<(&str, String)> = vec![
        ("MX token", mx_token.clone()),
        ("MX token signature", mx_token.rsplit('.').next().unwrap().to_owned()),
        ("OneTrust token signature", ot_token.rsplit('.').next().unwrap().to_owned()),
        ("MX client secret", mx_secret.to_owned()),
        ("OneTrust client secret", ot_secret.to_owned()),
        ("customer id", customer.to_owned()),
    ];

    let logs = env.operator.logs();
    assert!(logs.contains("TRACE"), "the capture is at trace level");
    assert!(logs.len() > 10_000, "the capture has content ({} bytes)", logs.len());
    assert!(!logs.contains('\u{1b}'), "no terminal escape codes in a log written to a file");
    assert!(logs.contains("consent-token-operator starting") && logs.contains(env!("CARGO_PKG_VERSION")));
    let tokens = env.tokens().list(&ListParams::default()).await.unwrap().items;
    let statuses = serde_json::to_string(&tokens.iter().map(|ct| &ct.status).collect::<Vec<_>>()).unwrap();
    assert!(statuses.contains("Unauthorized") && statuses.contains("sha256:"));
    let events =
        Api::<Event>::namespaced(env.client.clone(), &env.namespace).list(&ListParams::default()).await.unwrap();
    assert!(!events.items.is_empty(), "events were published");
    let events = serde_json::to_string(&events.items).unwrap();
    let metrics = env.operator.metrics().await;
    for (what, value) in &secrets {
        assert!(!logs.contains(value.as_str()), "{what} in the operator log");
        assert!(!events.contains(value.as_str()), "{what} in an event");
        assert!(!metrics.contains(value.as_str()), "{what} in metrics");
        assert!(!statuses.contains(value.as_str()), "{what} in a status");
    }
}

#[test]
fn the_secrecy_scan_catches_every_form_a_secret_can_take() {
    use base64::Engine;
    let secret = r#"scan/check+"secret" value"#;
    let pair = format!("scan-client:{secret}");
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzY2FuIn0.c2lnbmF0dXJlLW9mLXRoZS1zY2FuLXRva2Vu";
    for value in [secret, pair.as_str(), jwt] {
        support::secrecy::remember(value);
    }
    let needles = support::secrecy::needles();
    let b64 = base64::engine::general_purpose::STANDARD;
    let leaks = [
        ("raw", format!("error: {secret}")),
        ("Basic header", format!("authorization: Basic {}", b64.encode(&pair))),
        ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)),
        (
            "form body",
            format!(
                "grant_type=client_credentials&client_secret={}",
                url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
            ),
        ),
        ("JSON", serde_json::json!({"message": secret}).to_string()),
        ("JWT signature only", "sig=c2lnbmF0dXJlLW9mLXRoZS1zY2FuLXRva2Vu".to_owned()),
    ];
    for (form, text) in leaks {
        assert!(!support::secrecy::findings(form, &text, &needles).is_empty(), "{form} not caught in {text}");
    }
    assert!(support::secrecy::findings("clean", "client_id=scan-client", &needles).is_empty());
}

#[test]
fn a_log_level_that_is_not_one_is_refused_at_start() {
    let binary = env!("CARGO_BIN_EXE_consent-token-operator");
    for (flag, rust_log) in [(Some("verbose"), None), (None, Some("loud"))] {
        let mut command = std::process::Command::new(binary);
        command.env_remove("RUST_LOG").env_remove("CONSENT_LOG_LEVEL");
        if let Some(level) = flag {
            command.args(["--log-level", level]);
        }
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag:?} {rust_log:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is not a log level"), "{stderr}");
    }
}

/// JSON logs, as the chart sets them: every line is one JSON object, and every line a reconcile
/// logs names its object as top-level `namespace` and `name` (for a log pipeline's index); lines
/// outside a reconcile name none.
#[tokio::test]
async fn every_line_of_a_reconcile_names_its_object_also_in_json() {
    let env = TestEnv::start_with("json-logs", &["--log-format", "json"]).await;
    env.fdx_token("alice", "json-logs-customer").await;
    env.wait_for_ready("alice", "True", "TokenValid").await;
    let logs = env.operator.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    let message = |line: &serde_json::Value| line["fields"]["message"].as_str().unwrap_or_default().to_owned();
    let fetching: Vec<&serde_json::Value> = lines.iter().filter(|l| message(l) == "fetching a token").collect();
    assert!(!fetching.is_empty(), "the reconcile logged its fetch at debug:\n{logs}");
    for line in fetching {
        assert_eq!(line["namespace"], env.namespace.as_str(), "{line}");
        assert_eq!(line["name"], "alice", "{line}");
        assert_eq!(line["level"], "DEBUG", "{line}");
    }
    let starting = lines.iter().find(|l| message(l) == "consent-token-operator starting").expect("the start line");
    assert!(starting.get("name").is_none(), "outside a reconcile no object is named: {starting}");
}
