//! Egress through an HTTPS proxy (`--https-proxy`), as in clusters that reach the internet only
//! that way: a `CONNECT` proxy on loopback (tests/support/connect_proxy.rs) that asks for
//! credentials and resolves the provider's name itself. The operator has no address for
//! `bank.fake.test`: a token from there came through the proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use support::connect_proxy::ConnectProxy;
use support::operator::TestEnv;

const USER: &str = "egress-operator";

/// The fake's port: the same server answers every name.
fn port(env_fake_host: &str) -> u16 {
    env_fake_host.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// An operator through `proxy` with `password`, which may call `bank.fake.test` (and
/// `localhost`, directly) on the fake's port only.
async fn through(prefix: &str, proxy: &ConnectProxy, password: &str) -> TestEnv {
    support::secrecy::remember(password);
    support::secrecy::remember(&format!("{USER}:{password}"));
    let setup = TestEnv::setup(prefix, &[]).await;
    let port = port(&setup.fake.host());
    let mut launch = setup
        .launch_defaults()
        .args(&["--https-proxy", &proxy.url(), "--no-proxy", "localhost"])
        .args(&["--allowed-provider-hosts", "bank.fake.test,localhost"])
        // What the chart sets from `egress.proxyCredentialsSecret`.
        .env("CONSENT_HTTPS_PROXY_USERNAME", USER)
        .env("CONSENT_HTTPS_PROXY_PASSWORD", password);
    launch.provider_ports = port.to_string();
    let env = setup.launch(launch).await;
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret_annotated(
        "mx-credentials",
        &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")],
        &[("consent.dev/allowed-hosts", "*.fake.test,localhost")],
    )
    .await;
    env
}

fn fdx(base_url: &str) -> serde_json::Value {
    serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": "egress-customer-1",
        "credentialsSecretRef": {"name": "mx-credentials"}}})
}

#[tokio::test]
async fn tokens_come_through_the_proxy_and_refused_targets_never_reach_it() {
    let proxy = ConnectProxy::start(USER, "proxy-password-7f3a9c");
    let env = through("egress", &proxy, "proxy-password-7f3a9c").await;
    let port = port(&env.fake.host());
    let bank = format!("bank.fake.test:{port}");

    env.create_token("through", fdx(&format!("https://{bank}"))).await;
    env.wait_for_ready("through", "True", "TokenValid").await;
    let tunnels = proxy.tunnels();
    assert!(tunnels.iter().any(|t| t.target == bank), "{tunnels:?}");
    assert!(tunnels.iter().all(|t| t.authorized), "the proxy's credentials on every CONNECT: {tunnels:?}");

    // --no-proxy: localhost is called directly, with the address rules (loopback allowed here).
    env.create_token("direct", fdx(&env.fake.base_url())).await;
    env.wait_for_ready("direct", "True", "TokenValid").await;

    // A host and a port the admin did not allow: refused before any tunnel is asked for.
    env.create_token("elsewhere", fdx(&format!("https://other.fake.test:{port}"))).await;
    env.create_token("other-port", fdx(&format!("https://bank.fake.test:{}", port.wrapping_add(1)))).await;
    let elsewhere = env.wait_for_ready("elsewhere", "False", "ProviderNotAllowed").await;
    let other_port = env.wait_for_ready("other-port", "False", "ProviderNotAllowed").await;
    assert!(support::operator::ready_message(&elsewhere).contains("other.fake.test"));
    assert!(support::operator::ready_message(&other_port).contains("port"));
    let targets: Vec<String> = proxy.tunnels().into_iter().map(|t| t.target).collect();
    assert!(targets.iter().all(|t| *t == bank), "only the allowed target was ever asked for: {targets:?}");
    assert_eq!(env.fake.requests(fake_provider::Endpoint::FdxToken), 2, "through the proxy, and directly");
}

#[tokio::test]
async fn a_proxy_that_refuses_the_credentials_is_reported_and_never_named_with_them() {
    let proxy = ConnectProxy::start(USER, "the-right-password-91b2");
    let env = through("egress-refused", &proxy, "a-wrong-password-3c8d").await;
    let port = port(&env.fake.host());
    env.create_token("through", fdx(&format!("https://bank.fake.test:{port}"))).await;
    let ct = env.wait_for_ready("through", "False", "UpstreamError").await;
    let message = support::operator::ready_message(&ct);
    assert!(message.contains("egress proxy"), "{message}");
    let tunnels = proxy.tunnels();
    assert!(!tunnels.is_empty() && tunnels.iter().all(|t| !t.authorized), "{tunnels:?}");
    assert_eq!(env.fake.requests(fake_provider::Endpoint::FdxToken), 0);
    // The secrecy scan (on drop) looks for both passwords in the log, Events, statuses, metrics.
}
