//! Many objects against a failing or hostile provider: a tarpit delays only its own
//! ConsentTokens, an outage draws fewer requests than normal operation, with everything renewed
//! soon after it ends, and under a backlog ConsentTokens are served in the order they came. The
//! figures are printed (`-- --nocapture`) and recorded in docs/reliability.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::{Duration, Instant};

use consent_token_operator::api::crd::ConsentToken;
use fake_provider::{Endpoint, FakeProvider, Fault};
use jiff::Timestamp;
use kube::api::ListParams;
use support::operator::{Launch, TestEnv};

fn fdx(base_url: &str, customer: &str, secret: &str) -> serde_json::Value {
    serde_json::json!({"fdx": {"baseUrl": base_url, "customerId": customer, "credentialsSecretRef": {"name": secret}}})
}

fn ready(ct: &ConsentToken) -> Option<(String, String)> {
    let condition = ct.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((condition.status.clone(), condition.reason.clone()))
}

async fn list(env: &TestEnv, prefix: &str) -> Vec<ConsentToken> {
    let all = env.tokens().list(&ListParams::default()).await.unwrap().items;
    all.into_iter().filter(|ct| ct.metadata.name.as_deref().is_some_and(|n| n.starts_with(prefix))).collect()
}

async fn wait_all_ready(env: &TestEnv, prefix: &str, count: usize) {
    support::eventually(&format!("{count} {prefix}* Ready"), Duration::from_secs(90), || async {
        let ready_now = list(env, prefix).await.iter().filter(|ct| ready(ct).is_some_and(|(s, _)| s == "True")).count();
        (ready_now == count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_tarpitting_host_delays_only_its_own_consent_tokens() {
    let setup = TestEnv::setup("tarpit", &[]).await;
    let tarpit = FakeProvider::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    setup.fake.set_fdx_lifetime(30); // renewed every 15 s or so
    tarpit.inject(Endpoint::FdxToken, Fault::Slow(Duration::from_secs(3600)), None); // answers never come
    let ca = format!("{}{}", setup.fake.ca_pem(), tarpit.ca_pem());
    let launch = Launch { ca_pem: ca, ..setup.launch_defaults() }.args(&[
        "--upstream-timeout",
        "5s",
        "--concurrency",
        "8",
        "--upstream-concurrency-per-host",
        "3",
    ]);
    let env = setup.launch(launch).await;
    tarpit.add_fdx_client("mx-tarpit", "mx-secret-tarpit");
    env.fake.add_fdx_client("mx-healthy", "mx-secret-healthy");
    env.put_secret("tarpit-credentials", &[("client_id", "mx-tarpit"), ("client_secret", "mx-secret-tarpit")]).await;
    env.put_secret("healthy-credentials", &[("client_id", "mx-healthy"), ("client_secret", "mx-secret-healthy")]).await;
    for i in 0..50 {
        env.create_token(
            &format!("tarpit-{i}"),
            fdx(&tarpit.base_url(), &format!("tarpit-customer-{i}"), "tarpit-credentials"),
        )
        .await;
        env.create_token(
            &format!("healthy-{i}"),
            fdx(&env.fake.base_url(), &format!("healthy-customer-{i}"), "healthy-credentials"),
        )
        .await;
    }
    wait_all_ready(&env, "healthy-", 50).await;

    // Over 45 s (three lifetimes' worth of renewals), every healthy token stays valid.
    let started = Instant::now();
    let mut least_left = i64::MAX;
    while started.elapsed() < Duration::from_secs(45) {
        let now = Timestamp::now();
        let on_secrets = env.all_on_secrets().await;
        for ct in list(&env, "healthy-").await {
            let name = ct.metadata.name.clone().unwrap();
            assert_eq!(ready(&ct).map(|(s, _)| s), Some("True".to_owned()), "{name} lost its token");
            let expires = on_secrets[&name].expires_at.unwrap();
            least_left = least_left.min(expires.as_second() - now.as_second());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let healthy_requests = env.fake.requests(Endpoint::FdxToken);
    let tarpit_requests = tarpit.requests(Endpoint::FdxToken);
    eprintln!(
        "tarpit: {tarpit_requests} requests to the tarpit; {healthy_requests} to the healthy host; least time left on a healthy token: {least_left} s"
    );
    assert!(tarpit_requests > 0, "the tarpit was being tried all along");
    assert!(healthy_requests >= 50 * 3, "healthy tokens kept being renewed: {healthy_requests}");
    assert!(least_left > 0);
}

#[tokio::test]
async fn an_outage_draws_fewer_requests_than_normal_and_everything_is_renewed_soon_after() {
    let env = TestEnv::start("outage").await;
    const N: usize = 100;
    env.fdx_token("mx-0", "outage-customer-0").await;
    for i in 1..N {
        env.create_token(
            &format!("mx-{i}"),
            fdx(&env.fake.base_url(), &format!("outage-customer-{i}"), "mx-credentials"),
        )
        .await;
    }
    wait_all_ready(&env, "mx-", N).await;
    // 300-second tokens renewed at half their life: in steady state N per 150 s.
    let normal_per_minute = N as f64 * 60.0 / 150.0;
    // The first renewals of new objects fall between 15 s and 150 s: let some fall in the outage.
    tokio::time::sleep(Duration::from_secs(30)).await;

    let before = env.fake.requests(Endpoint::FdxToken);
    env.fake.inject(Endpoint::FdxToken, Fault::Status(500), None);
    let outage = Instant::now();
    let mut expired_seen = 0;
    while outage.elapsed() < Duration::from_secs(60) {
        expired_seen +=
            list(&env, "mx-").await.iter().filter(|ct| ready(ct).is_some_and(|(s, _)| s == "False")).count();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let during = env.fake.requests(Endpoint::FdxToken) - before;
    env.fake.clear_faults(Endpoint::FdxToken);
    let recovery = Timestamp::now();
    let recovered = Instant::now();
    assert!(env.fake.answers(Endpoint::FdxToken, 500) >= 1, "renewals came due during the outage and were tried");
    assert!(
        during as f64 <= normal_per_minute,
        "{during} requests during a 60 s outage; normal rate {normal_per_minute}/min"
    );
    assert_eq!(expired_seen, 0, "no token expired during the outage");

    // Within 30 s of the recovery, nothing is overdue and nothing is failing.
    support::eventually("every token renewed after the recovery", Duration::from_secs(35), || async {
        let all = list(&env, "mx-").await;
        let on_secrets = env.all_on_secrets().await;
        all.iter()
            .all(|ct| {
                let status = ct.status.as_ref().unwrap();
                let next = on_secrets.get(ct.metadata.name.as_deref().unwrap()).map(|s| s.next_refresh_at);
                status.consecutive_failures == 0 && next.is_some_and(|next| next > recovery)
            })
            .then_some(())
    })
    .await;
    eprintln!(
        "outage: {during} requests in 60 s (normal {normal_per_minute:.0}/min); all renewed {:?} after the recovery",
        recovered.elapsed()
    );
}

#[tokio::test]
async fn under_a_backlog_consent_tokens_get_their_first_token_in_the_order_they_came() {
    // One reconcile at a time and a provider that takes 2 s a token: a backlog of seconds.
    // (kube-runtime's controller, used before, took such a backlog in hash order.)
    let env = TestEnv::start_with("turns", &["--concurrency", "1"]).await;
    env.fake.inject(Endpoint::FdxToken, Fault::Slow(Duration::from_secs(2)), None);
    env.fdx_token("early-0", "turns-customer-early-0").await;
    let create = |name: String| {
        let env = &env;
        async move {
            let spec = fdx(&env.fake.base_url(), &format!("turns-customer-{name}"), "mx-credentials");
            env.create_token(&name, spec).await;
        }
    };
    const EACH: usize = 6;
    for i in 1..EACH {
        create(format!("early-{i}")).await;
    }
    // Every early one is running or queued before the late ones come.
    support::eventually("the early ones queued", Duration::from_secs(30), || async {
        (env.operator.queued().await >= (EACH - 1) as f64).then_some(())
    })
    .await;
    for i in 0..EACH {
        create(format!("late-{i}")).await;
    }
    support::eventually("every ConsentToken Ready", Duration::from_secs(120), || async {
        let ready = list(&env, "").await.iter().filter(|ct| ready(ct).is_some_and(|(s, _)| s == "True")).count();
        (ready == 2 * EACH).then_some(())
    })
    .await;

    // Fetches are 2 s apart, so their whole-second times are distinct and in fetch order.
    let fetched = |prefix: &'static str| {
        let env = &env;
        async move {
            let mut times: Vec<(Timestamp, String)> = env
                .all_on_secrets()
                .await
                .into_iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(name, on_secret)| (on_secret.refreshed_at, name))
                .collect();
            times.sort();
            times
        }
    };
    let (early, late) = (fetched("early-").await, fetched("late-").await);
    eprintln!("turns: first tokens in this order: {early:?} then {late:?}");
    assert!(
        early.last().unwrap().0 < late.first().unwrap().0,
        "a late ConsentToken got its token before an early one: {early:?} {late:?}"
    );
}

#[tokio::test]
async fn under_a_backlog_a_renewal_that_comes_due_goes_before_first_tokens() {
    // One reconcile at a time and a provider that takes 2 s a token: 25 new objects are a
    // backlog of 50 s, and a 40 s token served before them is due for renewal 20 s into it.
    // First come, first served, the renewal would wait for the rest of the backlog (about 30 s:
    // its token would then be renewed with 10 s left, too late for the kubelet).
    let env = TestEnv::start_with("due-first", &["--concurrency", "1"]).await;
    env.fake.set_fdx_lifetime(40);
    env.fake.inject(Endpoint::FdxToken, Fault::Slow(Duration::from_secs(2)), None);
    env.fdx_token("renewing", "due-first-customer").await;
    env.wait_for_ready("renewing", "True", "TokenValid").await;
    let before = env.on_secret("renewing").await.unwrap();
    let objects = (0..25)
        .map(|i| {
            serde_json::json!({"apiVersion": "consent.dev/v1alpha1", "kind": "ConsentToken",
                "metadata": {"name": format!("new-{i}")},
                "spec": fdx(&env.fake.base_url(), &format!("due-first-customer-{i}"), "mx-credentials")})
        })
        .collect();
    assert_eq!(env.create_tokens(objects).await, 25);

    let renewed = support::eventually("the renewal", Duration::from_secs(60), || async {
        let now = env.on_secret("renewing").await?;
        (now.fingerprint != before.fingerprint).then_some(now)
    })
    .await;
    let late = renewed.refreshed_at.duration_since(before.next_refresh_at).as_secs_f64();
    let served_after = env
        .all_on_secrets()
        .await
        .iter()
        .filter(|(name, on)| name.starts_with("new-") && on.refreshed_at < renewed.refreshed_at)
        .count();
    eprintln!(
        "due first: renewed {late:.1} s after its planned time; {served_after} of 25 new objects served before it"
    );
    // The fetch under way when it came due (2 s) and its own (2 s), with room for a busy machine.
    assert!(late <= 6.0, "the renewal waited {late:.1} s behind the backlog");
    assert!(served_after < 25, "the backlog was over before the renewal: this shows nothing");
}
