//! `kubectl consent`, run by the real kubectl (found on the PATH as a plugin) against the real
//! control plane and a running operator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::path::Path;
use std::time::Duration;

use consent_token_operator::api::annotations;
use consent_token_operator::api::crd::ConsentProvider;
use fake_provider::Endpoint;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use support::operator::TestEnv;

/// `kubectl consent ARGS`, with the plugin of this build first on the PATH; (exit code, stdout,
/// stderr). Awaited, not blocking: the fake provider answers on this test's runtime meanwhile.
async fn kubectl_consent(args: &[&str]) -> (i32, String, String) {
    run_plugin(args, true).await
}

/// [`kubectl_consent`] with no KUBECONFIG and an empty HOME: only the flags name the cluster.
async fn kubectl_consent_without_env(args: &[&str]) -> (i32, String, String) {
    run_plugin(args, false).await
}

async fn run_plugin(args: &[&str], kubeconfig_in_env: bool) -> (i32, String, String) {
    let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-consent")).parent().unwrap();
    let path = format!("{}:{}", plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let empty_home = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("kubectl");
    command.arg("consent").args(args).env("PATH", path);
    if kubeconfig_in_env {
        command.env("KUBECONFIG", support::kubeconfig());
    } else {
        command.env_remove("KUBECONFIG").env("HOME", empty_home.path());
    }
    let output = command.output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn status_refresh_and_inspect_through_kubectl() {
    let mut env = TestEnv::start("plugin").await;
    let ns = env.namespace.clone();
    for (name, customer) in
        [("alice", "plugin-customer-alice"), ("bob", "plugin-customer-bob"), ("carol", "plugin-customer-carol")]
    {
        env.fdx_token(name, customer).await;
    }
    for name in ["alice", "bob"] {
        let patch = serde_json::json!({"metadata": {"labels": {"team": "web"}}});
        env.tokens().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    for name in ["alice", "bob", "carol"] {
        env.wait_for_ready(name, "True", "TokenValid").await;
    }

    // status: a line per ConsentToken, with the reason, the lifetime and times to expiry and
    // refresh.
    let (code, table, err) = kubectl_consent(&["status", "-n", &ns]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("EXPIRES") && lines[0].contains("NEXT REFRESH"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    for (line, name) in lines[1..].iter().zip(["alice", "bob", "carol"]) {
        assert!(
            line.starts_with(name) && line.contains("FDX") && line.contains("True") && line.contains("TokenValid"),
            "{table}"
        );
        let cells: Vec<&str> = line.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells[4], "5m", "the lifetime: {line}");
        // From the Secret's annotations: the status does not carry them while renewals succeed.
        assert!(cells[5].starts_with("in ") && cells[6].starts_with("in "), "expiry and next refresh ahead: {line}");
    }
    let (code, all, _) = kubectl_consent(&["status", "-A", "-l", "team=web"]).await;
    assert_eq!(code, 0);
    assert!(
        all.starts_with("NAMESPACE") && all.contains(&ns) && all.contains("alice") && !all.contains("carol"),
        "{all}"
    );

    // -o json and -o yaml: the objects as a List, as `kubectl get` prints them; -o wide: the
    // target Secret and the failure count too.
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()).collect()
    };
    let (code, json, err) = kubectl_consent(&["status", "-n", &ns, "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (list["kind"].as_str(), names(&list)),
        (Some("List"), vec!["alice".into(), "bob".into(), "carol".into()])
    );
    assert_eq!(list["items"][0]["kind"], "ConsentToken");
    assert_eq!(list["items"][0]["status"]["conditions"][0]["reason"], "TokenValid");
    let (code, yaml, err) = kubectl_consent(&["status", "alice", "-n", &ns, "-o", "yaml"]).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(names(&list), ["alice"]);
    let (code, wide, err) = kubectl_consent(&["status", "-n", &ns, "-o", "wide"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(wide.lines().next().unwrap().contains("SECRET   FAILURES"), "{wide}");
    let alice = wide.lines().find(|l| l.starts_with("alice")).unwrap();
    let cells: Vec<&str> = alice.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!((cells[7], cells[8]), ("alice", "0"), "{wide}");

    // --kubeconfig and --context, as kubectl's own flags, with no KUBECONFIG in the environment.
    let kubeconfig = kube::config::Kubeconfig::read_from(support::kubeconfig()).unwrap();
    let context = kubeconfig.current_context.clone().unwrap();
    let path = support::kubeconfig().to_str().unwrap();
    let (code, table, err) =
        kubectl_consent_without_env(&["status", "-n", &ns, "--kubeconfig", path, "--context", &context]).await;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("alice") && table.contains("carol"), "{table}");
    let (code, _, err) =
        kubectl_consent_without_env(&["status", "-n", &ns, "--kubeconfig", path, "--context", "nope"]).await;
    assert_eq!(code, 1, "an unknown context is an error");
    assert!(err.contains("nope"), "the error names the context: {err}");

    // refresh NAME: a new token, and the operator's answer waited for.
    let before = env.token_in_secret("alice", "token").await.unwrap();
    let requests = env.fake.requests(Endpoint::FdxToken);
    let (code, said, err) = kubectl_consent(&["refresh", "alice", "-n", &ns]).await;
    assert_eq!(code, 0, "{said}{err}");
    assert_eq!(said.trim(), format!("{ns}/alice: refreshed"));
    assert_ne!(env.token_in_secret("alice", "token").await.unwrap(), before);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), requests + 1);

    // refresh -l at a capped rate: one request a second here, so the annotations the plugin
    // wrote are at least a second apart.
    let (code, said, err) = kubectl_consent(&["refresh", "-n", &ns, "-l", "team=web", "--rate", "1"]).await;
    assert_eq!(code, 0, "{said}{err}");
    assert_eq!(said.lines().filter(|l| l.ends_with(": refreshed")).count(), 2, "{said}");
    let mut requested = Vec::new();
    for name in ["alice", "bob"] {
        let ct = env.tokens().get(name).await.unwrap();
        requested.push(ct.annotations()["consent.dev/refresh-requested-at"].parse::<Timestamp>().unwrap());
    }
    let gap = requested[1].duration_since(requested[0]).as_secs_f64();
    assert!(gap >= 0.99, "requests {gap}s apart");
    assert!(env.tokens().get("carol").await.unwrap().annotations().get("consent.dev/refresh-requested-at").is_none());

    // Without a target, refresh refuses (exit 2) and sends nothing.
    let (code, _, err) = kubectl_consent(&["refresh", "-n", &ns]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--selector or --all"), "{err}");

    // inspect: the claims, never the token or the customer's id.
    let token = env.token_in_secret("bob", "token").await.unwrap();
    let (code, said, err) = kubectl_consent(&["inspect", "bob", "-n", &ns]).await;
    assert_eq!(code, 0, "{err}");
    assert!(said.contains("exp:") && said.contains("iat:") && said.contains("(values not shown)"), "{said}");
    let fingerprint = env.on_secret("bob").await.unwrap().fingerprint;
    assert!(said.contains(&fingerprint), "{said}");
    assert!(!said.contains(&token) && !said.contains(token.split('.').nth(2).unwrap()), "the token was printed");
    assert!(!said.contains("plugin-customer-bob"), "the customer id was printed: {said}");

    // version: the plugin's line needs no cluster; the operator's is said unknown without one.
    let client_line = format!("kubectl-consent {} (revision ", env!("CARGO_PKG_VERSION"));
    let (code, said, err) = kubectl_consent_without_env(&["version", "--client"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(said.starts_with(&client_line) && said.lines().count() == 1, "{said}");
    let (code, said, err) = kubectl_consent_without_env(&["version"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = said.lines().collect();
    assert!(lines[0].starts_with(&client_line), "{said}");
    assert!(lines[1].starts_with("operator: unknown: "), "{said}");
    // With the cluster: the leader's build, from the Lease it renews.
    let (code, said, err) =
        kubectl_consent(&["version", "--operator-namespace", &ns, "--lease-name", "operator"]).await;
    assert_eq!(code, 0, "{err}");
    let operator_line = said.lines().nth(1).unwrap_or_default();
    assert!(operator_line.starts_with(&format!("operator {}, leader ", annotations::build())), "{said}");
    assert!(operator_line.ends_with(&format!("(Lease {ns}/operator)")), "{said}");
    let (code, script, err) = kubectl_consent_without_env(&["completion", "bash"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(script.contains("complete -F") && script.contains("kubectl-consent"), "{script}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("completion.bash"), &script).unwrap();
    let parsed = std::process::Command::new("bash").arg("-n").arg(dir.path().join("completion.bash")).status().unwrap();
    assert!(parsed.success(), "bash parses the completion script");

    // kubectl's own completion of `kubectl consent ...`, through kubectl_complete-consent (a
    // link to the plugin on the PATH): verbs, flag values, and ConsentToken names from the cluster.
    let links = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-consent"), links.path().join("kubectl_complete-consent"))
        .unwrap();
    let complete = |words: Vec<String>| {
        let plugin_dir = Path::new(env!("CARGO_BIN_EXE_kubectl-consent")).parent().unwrap().to_owned();
        let path = format!("{}:{}:{}", links.path().display(), plugin_dir.display(), std::env::var("PATH").unwrap());
        async move {
            let output = tokio::process::Command::new("kubectl")
                .arg("__complete")
                .arg("consent")
                .args(&words)
                .env("PATH", path)
                .env("KUBECONFIG", support::kubeconfig())
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect::<Vec<String>>()
        }
    };
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    assert!(complete(words(&["st"])).await.contains(&"status".to_owned()));
    let values = complete(words(&["status", "-o", ""])).await;
    assert!(["json", "yaml", "wide"].iter().all(|v| values.contains(&v.to_string())), "{values:?}");
    let names = complete(words(&["refresh", "-n", &ns, ""])).await;
    assert!(["alice", "bob", "carol"].iter().all(|n| names.contains(&n.to_string())), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some(":4"), "no file names: {names:?}");

    // A name that does not exist: the API server's answer, exit 1.
    let (code, _, err) = kubectl_consent(&["inspect", "nobody", "-n", &ns]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");

    // status --providers: a ConsentProvider whose credentials Secret does not exist is not Ready,
    // and says why.
    let provider: ConsentProvider = serde_json::from_value(serde_json::json!({
        "apiVersion": "consent.dev/v1alpha1", "kind": "ConsentProvider", "metadata": {"name": "bank"},
        "spec": {"fdx": {"baseUrl": env.fake.base_url(), "credentialsSecretRef": {"name": "no-such-secret"}}}
    }))
    .unwrap();
    Api::<ConsentProvider>::namespaced(env.client.clone(), &ns)
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let line = support::eventually("the provider's status in the table", Duration::from_secs(30), || async {
        let (code, table, _) = kubectl_consent(&["status", "--providers", "-n", &ns]).await;
        let line = table.lines().find(|l| l.starts_with("ConsentProvider"))?.to_owned();
        (code == 0 && line.contains("CredentialsNotFound")).then_some(line)
    })
    .await;
    let cells: Vec<&str> = line.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(&cells[..6], ["ConsentProvider", ns.as_str(), "bank", "FDX", "False", "CredentialsNotFound"], "{line}");

    // check: the APIs, the leader (this operator's Lease), the caller's right to create.
    let installation = ["--operator-namespace", ns.as_str(), "--lease-name", "operator"];
    let (code, said, err) = kubectl_consent(&[&["check", "-n", &ns][..], &installation].concat()).await;
    assert_eq!(code, 0, "{said}{err}");
    assert_eq!(said.lines().filter(|l| l.starts_with("ok: ")).count(), 3, "{said}");
    assert!(said.contains(&format!("(Lease {ns}/operator)")), "{said}");
    // A ServiceAccount with no rights: it may not read the Lease (said, not failed), nor create.
    let dir = tempfile::tempdir().unwrap();
    let nobody = support::kubeconfig_as(&ns, "nobody", dir.path()).await;
    let nobody = nobody.to_str().unwrap();
    let (code, said, err) =
        kubectl_consent_without_env(&[&["check", "-n", &ns, "--kubeconfig", nobody][..], &installation].concat()).await;
    assert_eq!(code, 1, "{said}{err}");
    assert!(said.contains("?: cannot tell whether a replica leads"), "{said}");
    assert!(err.contains(&format!("you may not create ConsentTokens in namespace {ns}")), "{err}");
    // No replica leads once the operator is stopped: check says so and exits 1.
    assert!(env.operator.terminate().await, "the operator stopped");
    let err = support::eventually("check to find no leader", Duration::from_secs(30), || async {
        let (code, _, err) = kubectl_consent(&[&["check", "-n", &ns][..], &installation].concat()).await;
        (code == 1).then_some(err)
    })
    .await;
    assert!(err.contains("no replica leads"), "{err}");
}
