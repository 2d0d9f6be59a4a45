//! The trust boundary: a ConsentToken author can use only credentials whose Secret is marked for
//! the provider host, only hosts the cluster admin allows, and never a link-local or metadata
//! address. Each refusal shows in status with what to do, and nothing is sent anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use fake_provider::{Endpoint, FakeProvider};
use support::operator::{Launch, TestEnv};

const ALLOWED_HOSTS: &str = "consent.dev/allowed-hosts";
const ENDPOINTS: [Endpoint; 3] = [Endpoint::OneTrustOAuth, Endpoint::CollectionPointToken, Endpoint::FdxToken];

fn fdx(base_url: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": "trust-boundary-customer", "credentialsSecretRef": {"name": secret}}})
}

fn onetrust(hostname: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({"oneTrust": {"hostname": hostname,
        "collectionPoint": {"guid": "123e4567-e89b-12d3-a456-426614174000"}, "credentialsSecretRef": {"name": secret}}})
}

fn message(ct: &consent_token_operator::api::crd::ConsentToken) -> String {
    ct.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().message.clone()
}

fn assert_nothing_sent(fake: &FakeProvider) {
    for endpoint in ENDPOINTS {
        assert_eq!(fake.requests(endpoint), 0, "{endpoint:?} was called");
    }
}

#[tokio::test]
async fn credentials_go_only_to_the_hosts_their_secret_allows() {
    let env = TestEnv::start("marking").await;
    let mx = [("client_id", "mx-client"), ("client_secret", "mx-secret-marking")];
    let ot = [("client_id", "ot-client"), ("client_secret", "ot-secret-marking")];
    env.fake.add_fdx_client("mx-client", "mx-secret-marking");
    env.fake.add_onetrust_client("ot-client", "ot-secret-marking");
    // A Secret nobody marked (a database password, another team's key), and one marked for
    // other hosts than the ConsentToken names.
    env.put_secret_annotated("database", &mx, &[]).await;
    env.put_secret_annotated("onetrust-credentials", &ot, &[]).await;
    env.put_secret_annotated("for-onetrust", &mx, &[(ALLOWED_HOSTS, "*.onetrust.com")]).await;
    env.create_token("unmarked", fdx(&env.fake.base_url(), "database")).await;
    env.create_token("ot-unmarked", onetrust(&env.fake.host(), "onetrust-credentials")).await;
    env.create_token("wrong-host", fdx(&env.fake.base_url(), "for-onetrust")).await;

    let unmarked = env.wait_for_ready("unmarked", "False", "CredentialsNotAllowed").await;
    assert!(
        message(&unmarked).contains("kubectl annotate secret database consent.dev/allowed-hosts=localhost"),
        "{}",
        message(&unmarked)
    );
    // Addressed to the Secret's owner too: who asks, and allow it only if that use is intended.
    let asker = format!("ConsentToken {}/unmarked asks to send credentials Secret \"database\"", env.namespace);
    assert!(
        message(&unmarked).starts_with(&asker) && message(&unmarked).contains("Only if its owner intends this use"),
        "{}",
        message(&unmarked)
    );
    env.wait_for_ready("ot-unmarked", "False", "CredentialsNotAllowed").await;
    let wrong = env.wait_for_ready("wrong-host", "False", "CredentialsNotAllowed").await;
    assert!(
        message(&wrong).contains("\"*.onetrust.com\"") && message(&wrong).contains("localhost"),
        "{}",
        message(&wrong)
    );
    assert_nothing_sent(&env.fake);

    // The Secret's owner marks it: picked up within seconds, the ConsentToken untouched.
    env.put_secret_annotated("database", &mx, &[(ALLOWED_HOSTS, "localhost")]).await;
    env.wait_for_ready("unmarked", "True", "TokenValid").await;
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 1);
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 0, "the unmarked OneTrust credentials stay unused");
    let wrong = env.tokens().get("wrong-host").await.unwrap();
    assert_eq!(wrong.status.unwrap().conditions[0].reason, "CredentialsNotAllowed");
}

#[tokio::test]
async fn the_admins_rules_and_the_address_check_refuse_before_anything_is_sent() {
    let setup = TestEnv::setup("addresses", &[]).await;
    // The admin allows these names, and (wrongly) the link-local range, but not loopback. The
    // operator's resolver alone maps metadata.consent.test to the cloud metadata address.
    let launch = Launch {
        allow_loopback: false,
        hosts: vec![("169.254.169.254".into(), "metadata.consent.test".into())],
        ..setup.launch_defaults()
    }
    .args(&[
        "--allowed-provider-hosts",
        "localhost,*.consent.test,169.254.169.254",
        "--allowed-private-networks",
        "169.254.0.0/16,10.0.0.0/8",
    ]);
    let env = setup.launch(launch).await;
    env.fake.add_fdx_client("mx-client", "mx-secret-addresses");
    env.fake.add_onetrust_client("ot-client", "ot-secret-addresses");
    let everywhere = [(ALLOWED_HOSTS, "*")];
    env.put_secret_annotated(
        "mx",
        &[("client_id", "mx-client"), ("client_secret", "mx-secret-addresses")],
        &everywhere,
    )
    .await;
    env.put_secret_annotated(
        "ot",
        &[("client_id", "ot-client"), ("client_secret", "ot-secret-addresses")],
        &everywhere,
    )
    .await;

    let port = env.fake.addr().port();
    env.create_token("loopback", fdx(&env.fake.base_url(), "mx")).await;
    env.create_token("metadata-by-name", onetrust(&format!("metadata.consent.test:{port}"), "ot")).await;
    env.create_token("metadata-literal", fdx("https://169.254.169.254", "mx")).await;
    env.create_token("not-allowed-host", onetrust("app-eu.onetrust.com", "ot")).await;

    let loopback = env.wait_for_ready("loopback", "False", "ProviderAddressNotAllowed").await;
    assert!(message(&loopback).contains("--allowed-private-networks"), "{}", message(&loopback));
    for name in ["metadata-by-name", "metadata-literal"] {
        let refused = env.wait_for_ready(name, "False", "ProviderAddressNotAllowed").await;
        assert!(message(&refused).contains("link-local or cloud-metadata"), "{name}: {}", message(&refused));
    }
    let host = env.wait_for_ready("not-allowed-host", "False", "ProviderNotAllowed").await;
    assert!(message(&host).contains("--allowed-provider-hosts"), "{}", message(&host));
    assert_nothing_sent(&env.fake);
    let logs = env.operator.logs();
    assert!(logs.contains("ProviderAddressNotAllowed"), "the refusals are logged");
}
