//! One provider account's rate limit is shared fairly between the namespaces that use it. Two
//! namespaces hold credentials for the same MX client (one account); the provider allows it 30
//! requests a minute. A greedy namespace has 150 ConsentTokens of 120 s (renewed at 60 s left:
//! about 150 requests a minute, five times the account's limit); a quiet one has 5. The
//! provider's first 429 says the limit (`ot-requests-allowed`, `ot-period`); from then on the
//! greedy namespace is held back by the operator at its share (reason `RateLimited`, "this
//! namespace has used its share"), and the quiet namespace's renewals go: over four minutes its
//! least time left stays at or above 55 s and none of its tokens expires. The operator runs
//! cluster-wide on the chart's defaults. A test binary of its own: a cluster-wide operator must
//! not meet other tests' objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use fake_provider::Endpoint;
use support::faults::SecretSampler;
use support::operator::{Launch, TestEnv};

const GREEDY: usize = 150;
const QUIET: usize = 5;
const LIFETIME: u64 = 120;
const PER_MINUTE: u32 = 30;
const WATCHED: Duration = Duration::from_secs(240);

fn fdx(base_url: &str, customer: &str) -> serde_json::Value {
    serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": customer, "credentialsSecretRef": {"name": "mx"}}})
}

#[tokio::test]
async fn a_namespace_that_floods_a_shared_account_is_held_at_its_share_and_the_other_keeps_renewing() {
    let setup = TestEnv::setup("quota", &["greedy", "quiet"]).await;
    let [greedy, quiet] = [0, 1].map(|i| setup.other_namespaces[i].clone());
    setup.fake.set_fdx_lifetime(LIFETIME);
    setup.fake.set_rate_limit(Endpoint::FdxToken, Some(PER_MINUTE));
    setup.fake.add_fdx_client("mx-shared", "mx-shared-secret");
    let launch = Launch {
        namespace: None,
        // The chart's defaults where tests usually shorten them.
        min_token_lifetime: "90s".into(),
        refresh_request_interval: "30s".into(),
        lease_duration: support::faults::chart_lease_duration(),
        ..setup.launch_defaults()
    };
    let mut env = setup.launch(launch).await;
    let credentials = [("client_id", "mx-shared"), ("client_secret", "mx-shared-secret")];

    // The greedy namespace first: it spends the account's first minute and meets the 429.
    env.namespace = greedy.clone();
    env.put_secret("mx", &credentials).await;
    let base_url = env.fake.base_url();
    let greedy_objects = (0..GREEDY)
        .map(|i| {
            serde_json::json!({"apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                "metadata": {"name": format!("greedy-{i}")}, "spec": fdx(&base_url, &format!("greedy-customer-{i}"))})
        })
        .collect();
    assert_eq!(env.create_tokens(greedy_objects).await, GREEDY);
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.fake.answers(Endpoint::FdxToken, 429) == 0 {
        assert!(Instant::now() < deadline, "the provider never answered 429");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The quiet namespace, with the same account.
    env.namespace = quiet.clone();
    env.put_secret("mx", &credentials).await;
    for i in 0..QUIET {
        env.create_token(&format!("quiet-{i}"), fdx(&base_url, &format!("quiet-customer-{i}"))).await;
    }
    // The account may still be blocked by the provider's 429 (for everyone, until its minute
    // ends), and what it held back retries spread over the minute after.
    let tokens = env.tokens();
    support::eventually("every quiet ConsentToken Ready", Duration::from_secs(240), || {
        let tokens = tokens.clone();
        async move {
            let items = tokens.list(&Default::default()).await.ok()?.items;
            let ready = items.iter().filter(|ct| {
                ct.status
                    .as_ref()
                    .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            (ready.count() == QUIET).then_some(())
        }
    })
    .await;
    let sampler = SecretSampler::start(env.client.clone(), &quiet);
    let answered_429 = env.fake.answers(Endpoint::FdxToken, 429);
    let started = Instant::now();
    let mut held_greedy = false;
    while started.elapsed() < WATCHED {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(env.operator.is_running(), "the operator exited");
        env.namespace = greedy.clone();
        held_greedy |= env.tokens().list(&Default::default()).await.unwrap().items.iter().any(|ct| {
            ct.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| c.reason == "RateLimited" && c.message.contains("used its share"))
            })
        });
    }
    let renewals: usize =
        sampler.samples().values().map(|s| s.windows(2).filter(|w| w[0].fingerprint != w[1].fingerprint).count()).sum();
    eprintln!(
        "shared quota: quiet least time left {} s over {WATCHED:?}, {renewals} renewals; provider 429s while watched {}; \
         requests in all {}",
        sampler.least_time_left(),
        env.fake.answers(Endpoint::FdxToken, 429) - answered_429,
        env.fake.requests(Endpoint::FdxToken),
    );

    // The operator held the greedy namespace back itself, before what it did not do to the quiet one.
    assert!(held_greedy, "a greedy ConsentToken reports that its namespace used its share");
    let metrics = env.operator.metrics().await;
    let holds = metrics
        .lines()
        .find_map(|l| l.strip_prefix("consent_token_quota_share_holds_total{provider=\"FDX\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(holds.is_some_and(|n| n > 0.0), "the holds are counted: {holds:?}");
    assert!(sampler.lost().is_empty(), "quiet tokens lost: {:?}", sampler.lost());
    let samples = sampler.samples();
    assert_eq!(samples.len(), QUIET, "every quiet Secret was sampled");
    let expired: Vec<_> =
        samples.iter().filter(|(_, s)| s.iter().any(|s| s.exp <= s.at.as_second())).map(|(n, _)| n).collect();
    assert!(expired.is_empty(), "quiet tokens expired: {expired:?}");
    assert!(sampler.least_time_left() >= 55, "a quiet renewal came late: {} s left", sampler.least_time_left());
    assert!(renewals >= QUIET * 3, "the quiet tokens kept being renewed: {renewals}");
}
