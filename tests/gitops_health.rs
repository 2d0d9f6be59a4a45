//! What GitOps tools see: the Synced condition through `kubectl wait`, and the Argo CD health
//! checks of `deploy/argocd` run by a Lua interpreter (Debian's `lua5.4`; Argo CD runs them in
//! its own), on the sample objects of their `health_test.yaml` (Argo CD's own test layout) and on
//! a ConsentToken as the operator wrote it on the real control plane.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::path::{Path, PathBuf};

use consent_token_operator::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentToken};
use fake_provider::{Endpoint, Fault};
use serde_json::Value;
use support::operator::TestEnv;

const KINDS: [&str; 3] = ["ConsentToken", "ConsentProvider", "ClusterConsentProvider"];

fn health_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/resource_customizations/consent.dev").join(kind)
}

/// `value` as a Lua table constructor (JSON null: the key is left out, as Argo CD's conversion
/// gives nil).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(members) => format!(
            "{{{}}}",
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for byte in s.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// The health check of `kind` run on `object`: (status, message).
async fn health(kind: &str, object: &Value) -> (String, String) {
    let script = std::fs::read_to_string(health_dir(kind).join("health.lua")).unwrap();
    let program = format!(
        "obj = {}\nlocal function check()\n{script}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.lua");
    std::fs::write(&file, program).unwrap();
    let output = tokio::process::Command::new("lua5.4")
        .arg(&file)
        .output()
        .await
        .expect("lua5.4 (Debian's package; `make control-plane` installs it)");
    assert!(output.status.success(), "lua5.4: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_owned(), message.to_owned())
}

#[tokio::test]
async fn each_health_check_gives_what_its_tests_say_for_each_state() {
    for kind in KINDS {
        let dir = health_dir(kind);
        let tests: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
        let mut states = std::collections::BTreeSet::new();
        for case in tests["tests"].as_array().unwrap() {
            let input = case["inputPath"].as_str().unwrap();
            let object: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join(input)).unwrap()).unwrap();
            // Each sample is an object of its kind, as the API serves it.
            let parsed = match kind {
                "ConsentToken" => serde_json::from_value::<ConsentToken>(object.clone()).map(drop),
                "ConsentProvider" => serde_json::from_value::<ConsentProvider>(object.clone()).map(drop),
                _ => serde_json::from_value::<ClusterConsentProvider>(object.clone()).map(drop),
            };
            assert!(parsed.is_ok(), "{kind} {input}: {parsed:?}");
            assert_eq!(object["kind"], kind, "{input}");
            let expected = (
                case["healthStatus"]["status"].as_str().unwrap().to_owned(),
                case["healthStatus"]["message"].as_str().unwrap().to_owned(),
            );
            assert_eq!(health(kind, &object).await, expected, "{kind} {input}");
            states.insert(expected.0);
        }
        assert_eq!(states, ["Degraded", "Healthy", "Progressing"].map(str::to_owned).into(), "{kind}");
    }
}

#[tokio::test]
async fn the_generated_argocd_config_map_holds_each_health_check() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/argocd-cm.yaml")).unwrap();
    let map: Value = serde_yaml::from_str(&text).unwrap();
    for kind in KINDS {
        let script = std::fs::read_to_string(health_dir(kind).join("health.lua")).unwrap();
        let key = format!("resource.customizations.health.consent.dev_{kind}");
        assert_eq!(map["data"][&key].as_str(), Some(script.as_str()), "{key}: run `make generate`");
    }
}

/// `kubectl wait --for=condition=COND consenttoken/NAME`: whether it was met within `timeout`.
async fn kubectl_wait(namespace: &str, name: &str, condition: &str, timeout: &str) -> bool {
    let output = tokio::process::Command::new("kubectl")
        .args(["wait", "--namespace", namespace, &format!("--for=condition={condition}")])
        .args([&format!("consenttoken/{name}"), &format!("--timeout={timeout}")])
        .env("KUBECONFIG", support::kubeconfig())
        .output()
        .await
        .unwrap();
    output.status.success()
}

fn condition<'a>(ct: &'a ConsentToken, type_: &str) -> (&'a str, &'a str) {
    let c = ct.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

#[tokio::test]
async fn a_failing_refresh_shows_in_synced_and_argo_cd_health_while_the_token_is_valid() {
    let env = TestEnv::start("gitops").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    assert!(kubectl_wait(&env.namespace, "mx", "Synced", "60s").await, "Synced once the first token is written");
    let object = serde_json::to_value(env.tokens().get("mx").await.unwrap()).unwrap();
    assert_eq!(health("ConsentToken", &object).await.0, "Healthy");

    // The provider fails every refresh from now on; the token in the Secret stays valid.
    env.fake.inject(Endpoint::FdxToken, Fault::Status(503), None);
    env.request_refresh("mx").await;
    assert!(kubectl_wait(&env.namespace, "mx", "Synced=False", "60s").await, "Synced False while refreshes fail");
    let failing = env.tokens().get("mx").await.unwrap();
    assert_eq!(condition(&failing, "Ready"), ("True", "UpstreamError"), "Ready stays True: the token is valid");
    assert_eq!(condition(&failing, "Synced"), ("False", "UpstreamError"));
    let (status, message) = health("ConsentToken", &serde_json::to_value(&failing).unwrap()).await;
    assert_eq!(status, "Degraded");
    assert!(message.contains("HTTP 503") && message.contains("still valid"), "{message}");

    // The provider recovers: the operator's next retry succeeds and Synced turns True.
    env.fake.clear_faults(Endpoint::FdxToken);
    assert!(kubectl_wait(&env.namespace, "mx", "Synced", "120s").await, "Synced again after a successful refresh");
    let recovered = env.tokens().get("mx").await.unwrap();
    // docs/guides/gitops.md: the checks merged into an existing argocd-cm keep its other keys.
    support::kubectl(&["create", "namespace", "argocd"]);
    support::kubectl(&[
        "create",
        "configmap",
        "argocd-cm",
        "-n",
        "argocd",
        "--from-literal=url=https://argocd.example",
    ]);
    let patch = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/argocd-cm.yaml");
    let patch = patch.to_str().unwrap();
    support::kubectl(&["patch", "configmap", "argocd-cm", "-n", "argocd", "--type", "merge", "--patch-file", patch]);
    let keys = support::kubectl(&["get", "configmap", "argocd-cm", "-n", "argocd", "-o", "jsonpath={.data}"]);
    let keys: Value = serde_json::from_str(&keys).unwrap();
    assert_eq!(keys["url"], "https://argocd.example");
    assert!(keys["resource.customizations.health.consent.dev_ConsentToken"].as_str().unwrap().contains("Synced"));
    assert_eq!(condition(&recovered, "Ready"), ("True", "TokenValid"));
    assert_eq!(health("ConsentToken", &serde_json::to_value(&recovered).unwrap()).await.0, "Healthy");
}
