//! The operator killed (SIGKILL) at the worst moment: the provider has answered, the Secret
//! write has not landed. The next process renews every due token with one request each, and
//! no Secret ever goes back to an older token or is seen expired.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::Endpoint;
use support::faults::SecretSampler;
use support::operator::Operator;
use support::proxy::Cut;

#[tokio::test]
async fn killed_between_the_providers_answer_and_the_secret_write() {
    // A long Lease: the stalled leader must go on fetching while its writes hang (the fence is
    // not the subject here; leader_partition tests it).
    let (mut env, proxy, _dir) = support::proxy::env_through_proxy("kill", "60s").await;
    env.fake.set_fdx_lifetime(30);
    let (admin, namespace) = (env.client.clone(), env.namespace.clone());
    let tokens = 4;
    for i in 0..tokens {
        env.fdx_token(&format!("mx-{i}"), &format!("kill-customer-{i}")).await;
    }
    let mut before = Vec::new();
    for i in 0..tokens {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
        before.push(env.on_secret(&format!("mx-{i}")).await.unwrap().fingerprint);
    }
    let sampler = SecretSampler::start(admin.clone(), &namespace);
    let fetched = env.fake.requests(Endpoint::FdxToken);
    assert_eq!(fetched, tokens);

    // The operator's connection to the API server hangs from now on: when the tokens fall due
    // it fetches them (the provider answers) and its Secret writes never land.
    proxy.cut(Cut::Stall);
    support::eventually("every due token fetched by the stalled operator", Duration::from_secs(40), || async {
        (env.fake.requests(Endpoint::FdxToken) == 2 * tokens).then_some(())
    })
    .await;
    env.operator.kill();
    // The Lease given up in the killed leader's place: how long a standby waits for a dead
    // leader's Lease is high_availability's subject, not this test's.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(admin.clone(), &namespace);
    let vacant = serde_json::json!({"spec": {"holderIdentity": ""}});
    leases.patch("operator", &Default::default(), &kube::api::Patch::Merge(&vacant)).await.unwrap();
    for (i, fingerprint) in before.iter().enumerate() {
        let on_secret = env.on_secret(&format!("mx-{i}")).await.unwrap();
        assert_eq!(&on_secret.fingerprint, fingerprint, "nothing was written before the kill");
    }

    // A new process (directly connected) renews each due token once. The tokens it fetches
    // live ten minutes, so none of them falls due again before the count below: a thirteenth
    // request can only be a second fetch for the same due token.
    env.fake.set_fdx_lifetime(600);
    env.operator = Operator::start(&namespace, env.fake.ca_pem(), &[]).await;
    env.operator.wait_until_leader(&namespace).await;
    for (i, fingerprint) in before.iter().enumerate() {
        support::eventually(&format!("mx-{i} renewed by the new process"), Duration::from_secs(30), || async {
            (env.on_secret(&format!("mx-{i}")).await?.fingerprint != *fingerprint).then_some(())
        })
        .await;
    }
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 3 * tokens, "one request per due token by the new process");
    assert!(sampler.went_backwards().is_empty(), "{:?}", sampler.went_backwards());
    assert!(sampler.lost().is_empty());
    let least = sampler.least_time_left();
    assert!(least > 0, "a token was seen expired ({least}s left)");
    eprintln!("FIGURES kill mid-write: least time left seen {least}s; requests {} for {tokens} tokens", 3 * tokens);
}
