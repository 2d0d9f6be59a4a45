//! The target Secret's life: credential rotation, drift repair, foreign Secrets, deletion,
//! forced refresh, and a restart that resumes the schedule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use fake_provider::{Endpoint, Fault};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use support::operator::{Operator, TestEnv, claims};

#[tokio::test]
async fn rotated_credentials_are_used_within_seconds() {
    let env = TestEnv::start("rotate").await;
    env.fdx_token("mx", "customer-1").await;
    let before = env.wait_for_ready("mx", "True", "TokenValid").await.status.unwrap();

    // The provider now only accepts the new secret; the scheduled refresh is minutes away.
    env.fake.add_fdx_client("mx-client", "rotated-secret");
    let rotated =
        env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "rotated-secret")]).await;
    let new_version = rotated.resource_version().unwrap();

    let fingerprint_before = env.on_secret("mx").await.unwrap().fingerprint;
    let after = support::eventually("a token fetched with the new credentials", Duration::from_secs(20), || async {
        let status = env.tokens().get("mx").await.ok()?.status?;
        (status.credentials_version.as_deref() == Some(new_version.as_str())).then_some(status)
    })
    .await;
    assert_ne!(after.credentials_version, before.credentials_version);
    assert_ne!(env.on_secret("mx").await.unwrap().fingerprint, fingerprint_before);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 2);
}

#[tokio::test]
async fn onetrust_access_token_is_fetched_again_after_a_401() {
    let env = TestEnv::start("ot401").await;
    env.onetrust_token("cp", "ot-secret-before-401").await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    // The provider revokes every access token issued so far (same credentials still valid).
    env.fake.rotate_onetrust_secret("ot-client", "ot-secret-before-401");
    env.request_refresh("cp").await;
    support::eventually("a refresh after the revocation", Duration::from_secs(20), || async {
        (env.fake.requests(Endpoint::CollectionPointToken) == 3).then_some(())
    })
    .await;
    env.wait_for_ready("cp", "True", "TokenValid").await;
    assert_eq!(env.fake.requests(Endpoint::OneTrustOAuth), 2, "one new access token after the 401");
    assert_eq!(env.fake.answers(Endpoint::CollectionPointToken, 401), 1, "and exactly one retry");
}

#[tokio::test]
async fn an_edited_or_deleted_target_secret_is_put_back() {
    let env = TestEnv::start("drift").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let secrets = env.secrets();

    // Someone overwrites the token.
    let patch = serde_json::json!({"data": {"token": "dGFtcGVyZWQ="}});
    secrets.patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let repaired = support::eventually("the token to be put back", Duration::from_secs(20), || async {
        env.token_in_secret("mx", "token").await.filter(|t| t != "tampered")
    })
    .await;
    assert_eq!(support::operator::claims(&repaired)["scopes"]["customer.modify_consent"], "customer-1");

    // Someone strips the managed-by label (the Secret drops out of the operator's cache).
    let patch = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
    secrets.patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    support::eventually("the label to be put back", Duration::from_secs(20), || async {
        let secret = secrets.get("mx").await.ok()?;
        secret.labels().contains_key("app.kubernetes.io/managed-by").then_some(())
    })
    .await;
    assert_eq!(env.token_in_secret("mx", "token").await.as_deref(), Some(repaired.as_str()), "same token kept");

    // Someone deletes it.
    secrets.delete("mx", &DeleteParams::default()).await.unwrap();
    support::eventually("the Secret to be recreated", Duration::from_secs(20), || async {
        env.token_in_secret("mx", "token").await
    })
    .await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
}

#[tokio::test]
async fn a_secret_the_operator_does_not_own_is_never_overwritten() {
    let env = TestEnv::start("foreign").await;
    let foreign = Secret {
        metadata: ObjectMeta { name: Some("taken".into()), ..Default::default() },
        data: Some([("token".to_owned(), ByteString(b"someone else's".to_vec()))].into()),
        ..Default::default()
    };
    env.secrets().create(&PostParams::default(), &foreign).await.unwrap();
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    env.create_token(
        "mx",
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": "c",
            "credentialsSecretRef": {"name": "mx-credentials"}}, "target": {"secretName": "taken"}}),
    )
    .await;
    let ct = env.wait_for_ready("mx", "False", "TargetConflict").await;
    let message = &ct.status.unwrap().conditions[0].message;
    assert!(message.contains("\"taken\"") && message.contains("secretName"), "{message}");
    assert_eq!(env.token_in_secret("taken", "token").await.as_deref(), Some("someone else's"));
    assert!(env.secrets().get("taken").await.unwrap().owner_references().is_empty());
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 0, "no token fetched for nowhere to put it");
}

#[tokio::test]
async fn deleting_the_consent_token_deletes_its_secret_and_metrics() {
    let env = TestEnv::start("delete").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let labels = format!("{{namespace=\"{}\",name=\"mx\",provider=\"FDX\"", env.namespace);
    let metrics = env.operator.metrics().await;
    for series in [
        format!("consent_token_ready{labels},reason=\"TokenValid\"}} 1"),
        format!("consent_token_expiry_timestamp_seconds{labels}}}"),
        format!("consent_token_next_refresh_timestamp_seconds{labels}}}"),
        format!("consent_token_last_refresh_timestamp_seconds{labels}}}"),
        format!("consent_token_consecutive_failures{labels},reason=\"\"}} 0"),
    ] {
        assert!(metrics.contains(&series), "{series} missing from\n{metrics}");
    }
    assert!(metrics.contains("consent_token_leader 1") && metrics.contains("process_resident_memory_bytes "));
    assert_eq!(env.operator.readyz_over_ipv6().await, Some(200), "served on IPv6 as well as IPv4");

    env.tokens().delete("mx", &DeleteParams::background()).await.unwrap();
    support::eventually("the garbage collector to delete the Secret", Duration::from_secs(60), || async {
        env.secrets().get_opt("mx").await.unwrap().is_none().then_some(())
    })
    .await;
    support::eventually("every series of the object to go", Duration::from_secs(10), || async {
        (!env.operator.metrics().await.contains(&labels)).then_some(())
    })
    .await;
}

/// A ConsentToken deleted while its reconcile is still under way (here: held in the Ready
/// transition's Event, after the status was written and before the metrics are): the
/// reconcile's end sets its series again, and the worker forgets them once more, so no stale
/// expiry series is left to fire an alert.
#[tokio::test]
async fn a_consent_token_deleted_during_its_reconcile_leaves_no_series() {
    let env = TestEnv::start("deleted-mid-reconcile").await;
    let webhook = support::slow_admission::SlowAdmission::start("doomed").await;
    webhook.register(&env.client, &env.namespace).await;
    let reconciled = env.operator.reconciles().await;

    env.fdx_token("doomed", "customer-doomed").await;
    tokio::time::timeout(Duration::from_secs(30), webhook.wait_for_held()).await.expect("the Ready Event held");
    env.tokens().delete("doomed", &DeleteParams::background()).await.unwrap();
    support::eventually("the ConsentToken gone", Duration::from_secs(10), || async {
        env.tokens().get_opt("doomed").await.unwrap().is_none().then_some(())
    })
    .await;
    // Released only once the operator's watch has delivered the deletion: the reconcile then
    // ends after it, the order this test is about.
    support::eventually("the deletion seen by the operator", Duration::from_secs(10), || async {
        env.operator.logs().contains("deleted; its records forgotten").then_some(())
    })
    .await;
    webhook.release();

    let labels = format!("namespace=\"{}\",name=\"doomed\"", env.namespace);
    support::eventually("the reconcile over and no series of the object left", Duration::from_secs(20), || async {
        // One scrape for both: the reconcile's end and its series are read at the same moment.
        let metrics = env.operator.metrics().await;
        let finished = support::operator::reconciles_in(&metrics) > reconciled;
        (finished && !metrics.contains(&labels)).then_some(())
    })
    .await;
    assert!(env.operator.logs().contains("deleted during its reconcile; its records forgotten again"));
}

/// `kubectl replace --force` of a ConsentToken (deleted, then created again under the same name
/// with a new uid): the new object finds its predecessor's Secret, which it may not take
/// (TargetConflict), until the garbage collector deletes it. That deletion wakes it, so the
/// Secret holds a valid token again within seconds, not after the conflict's back-off.
#[tokio::test]
async fn a_replaced_consent_token_takes_the_secret_over_once_its_predecessors_is_gone() {
    let env = TestEnv::start("replace").await;
    env.fdx_token("replaced", "replace-customer").await;
    env.wait_for_ready("replaced", "True", "TokenValid").await;
    // What kubectl replace --force does: delete (background propagation), then create.
    env.tokens().delete("replaced", &DeleteParams::background()).await.unwrap();
    support::eventually("the old ConsentToken gone", Duration::from_secs(10), || async {
        env.tokens().get_opt("replaced").await.unwrap().is_none().then_some(())
    })
    .await;
    let replaced_at = jiff::Timestamp::now();
    let new_uid = env.fdx_token("replaced", "replace-customer").await.uid().unwrap();
    let token_back = support::eventually("a token from the new object", Duration::from_secs(60), || async {
        let secret = env.secrets().get_opt("replaced").await.unwrap()?;
        let ours = secret.owner_references().iter().any(|owner| owner.uid == new_uid);
        (ours && secret.data.is_some_and(|data| data.contains_key("token"))).then(jiff::Timestamp::now)
    })
    .await;
    let took = token_back.duration_since(replaced_at);
    eprintln!("FIGURES replace --force: the Secret held the new object's token {took:#} after the create");
    assert!(took.as_secs() <= 10, "the Secret took {took:#} to hold a token again");
    env.wait_for_ready("replaced", "True", "TokenValid").await;
}

/// Two ConsentTokens naming the same target Secret: the second waits (TargetConflict) and takes
/// the Secret over as soon as the first is deleted, without waiting for its back-off or for the
/// garbage collector to delete the first one's Secret.
#[tokio::test]
async fn a_consent_token_waiting_for_a_target_name_takes_it_when_its_holder_is_deleted() {
    let env = TestEnv::start("waiting").await;
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    let spec = |customer: &str| {
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": customer,
            "credentialsSecretRef": {"name": "mx-credentials"}}, "target": {"secretName": "shared-name"}})
    };
    env.create_token("holder", spec("waiting-customer-1")).await;
    env.wait_for_ready("holder", "True", "TokenValid").await;
    let waiter = env.create_token("waiter", spec("waiting-customer-2")).await;
    env.wait_for_ready("waiter", "False", "TargetConflict").await;
    env.tokens().delete("holder", &DeleteParams::background()).await.unwrap();
    let deleted_at = jiff::Timestamp::now();
    let waiter_uid = waiter.uid().unwrap();
    let taken = support::eventually("the waiter's token in the Secret", Duration::from_secs(60), || async {
        let secret = env.secrets().get_opt("shared-name").await.unwrap()?;
        let customer =
            claims(&String::from_utf8(secret.data?.get("token")?.0.clone()).ok()?)["scopes"]["customer.modify_consent"]
                .clone();
        let ours = secret.metadata.owner_references?.iter().any(|owner| owner.uid == waiter_uid);
        (ours && customer == "waiting-customer-2").then(jiff::Timestamp::now)
    })
    .await;
    let took = taken.duration_since(deleted_at);
    eprintln!(
        "FIGURES waiting for a target name: the waiter's token in the Secret {took:#} after the holder's deletion"
    );
    assert!(took.as_secs() <= 10, "the waiter took {took:#}");
    env.wait_for_ready("waiter", "True", "TokenValid").await;
}

#[tokio::test]
async fn the_refresh_annotation_refreshes_once_per_value() {
    let env = TestEnv::start("force").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let first = env.on_secret("mx").await.unwrap().fingerprint;
    env.request_refresh("mx").await;
    let second = support::eventually("a forced refresh", Duration::from_secs(20), || async {
        let fp = env.on_secret("mx").await?.fingerprint;
        (fp != first).then_some(fp)
    })
    .await;
    // Nothing more happens for the same annotation value: another annotation makes the
    // operator look again (its reconcile count moves), and it does not fetch.
    let reconciles = env.operator.reconciles().await;
    env.tokens()
        .patch(
            "mx",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"unrelated": "1"}}})),
        )
        .await
        .unwrap();
    env.operator.wait_for_reconciles(reconciles).await;
    assert_eq!(env.on_secret("mx").await.unwrap().fingerprint, second);
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 2);
}

#[tokio::test]
async fn a_restarted_operator_resumes_the_schedule_instead_of_refetching() {
    let mut env = TestEnv::start("restart").await;
    for i in 0..5 {
        if i == 0 {
            env.fdx_token("mx-0", "customer-0").await;
        } else {
            env.create_token(
                &format!("mx-{i}"),
                serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": format!("customer-{i}"),
                    "credentialsSecretRef": {"name": "mx-credentials"}}}),
            )
            .await;
        }
    }
    for i in 0..5 {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
    }
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 5);

    env.operator.kill();
    env.operator = Operator::start(&env.namespace, env.fake.ca_pem(), &[]).await;
    env.operator.wait_until_leader(&env.namespace).await;
    // The new process reconciled everything it found (five reconciles at least), and fetched nothing.
    support::eventually("the new process to reconcile all five", Duration::from_secs(30), || async {
        (env.operator.reconciles().await >= 5).then_some(())
    })
    .await;
    assert_eq!(env.fake.requests(Endpoint::FdxToken), 5, "tokens still valid and not due: nothing refetched");
    for i in 0..5 {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
    }
}

/// A rename whose first fetch fails (the provider answers 500), then heals: the old Secret goes
/// once the new one holds a token, although the failure already recorded the new spec.
#[tokio::test]
async fn a_rename_whose_first_fetch_failed_still_deletes_the_old_secret() {
    let env = TestEnv::start("rename-failed").await;
    env.fdx_token("mx", "rename-failed-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    env.fake.inject(Endpoint::FdxToken, Fault::Status(500), None);
    rename_target(&env, "mx", "mx-renamed").await;
    let failed = env.wait_for_ready("mx", "False", "UpstreamError").await;
    assert_eq!(failed.status.unwrap().observed_generation, failed.metadata.generation, "the new spec recorded");
    env.fake.clear_faults(Endpoint::FdxToken);
    token_moved(&env, "mx-renamed", "mx").await;
}

async fn rename_target(env: &TestEnv, name: &str, secret_name: &str) {
    let rename = serde_json::json!({"spec": {"target": {"secretName": secret_name}}});
    env.tokens().patch(name, &PatchParams::default(), &Patch::Merge(rename)).await.unwrap();
}

/// Waits for a token under the `to` name, then for the Secret under the `from` name to go.
async fn token_moved(env: &TestEnv, to: &str, from: &str) {
    support::eventually("the token under the new name", Duration::from_secs(60), || async {
        env.token_in_secret(to, "token").await
    })
    .await;
    support::eventually("the old Secret deleted", Duration::from_secs(30), || async {
        env.secrets().get_opt(from).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_renamed_target_takes_the_token_and_the_old_secret_goes() {
    let env = TestEnv::start("rename").await;
    env.fdx_token("mx", "rename-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    let old = env.secrets().get("mx").await.unwrap();
    rename_target(&env, "mx", "mx-renamed").await;
    token_moved(&env, "mx-renamed", "mx").await;
    let ct = env.wait_for_ready("mx", "True", "TokenValid").await;
    assert_eq!(ct.status.unwrap().observed_generation, ct.metadata.generation);
    assert_ne!(old.uid(), None);
}

#[tokio::test]
async fn a_secret_recreated_by_someone_else_is_not_taken_over_by_a_stale_cache() {
    // A Lease longer than the stall, so the operator stays leader through it.
    let (env, proxy, _dir) = support::proxy::env_through_proxy("recreated", "45s").await;
    env.fake.set_fdx_lifetime(12);
    env.fdx_token("mx", "recreated-customer").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;

    // The operator hears nothing for a while: meanwhile its Secret is replaced by someone
    // else's of the same name, and the token falls due, so it renews from its stale cache.
    proxy.cut(support::proxy::Cut::Stall);
    env.secrets().delete("mx", &DeleteParams::default()).await.unwrap();
    let foreign = Secret {
        metadata: ObjectMeta { name: Some("mx".into()), ..Default::default() },
        data: Some([("token".to_owned(), ByteString(b"someone-elses".to_vec()))].into()),
        ..Default::default()
    };
    env.secrets().create(&PostParams::default(), &foreign).await.unwrap();
    support::eventually("the renewal fetched while the operator is cut off", Duration::from_secs(30), || async {
        (env.fake.requests(Endpoint::FdxToken) >= 2).then_some(())
    })
    .await;
    proxy.heal();
    env.wait_for_ready("mx", "False", "TargetConflict").await;
    let secret = env.secrets().get("mx").await.unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"someone-elses");
    assert!(secret.metadata.owner_references.unwrap_or_default().is_empty(), "not taken over");
}

#[tokio::test]
async fn after_a_restart_overdue_tokens_are_spread_and_urgent_ones_go_first() {
    let mut env = TestEnv::start("spread").await;
    env.fake.add_fdx_client("mx-client", "mx-secret-value");
    env.put_secret("mx-credentials", &[("client_id", "mx-client"), ("client_secret", "mx-secret-value")]).await;
    let token = |customer: &str| {
        serde_json::json!({"fdx": {"baseUrl": env.fake.base_url(), "customerId": customer,
            "credentialsSecretRef": {"name": "mx-credentials"}}, "refresh": {"renewBefore": "190s"}})
    };
    // One token that will be close to expiry (100 s: under the kubelet's 90 s margin soon),
    // one whose Secret will be gone, and eight comfortably valid ones (200 s), all due 10 s
    // after their fetch.
    env.fake.set_fdx_lifetime(100);
    env.create_token("urgent", token("spread-urgent")).await;
    env.wait_for_ready("urgent", "True", "TokenValid").await;
    env.fake.set_fdx_lifetime(200);
    env.create_token("missing", token("spread-missing")).await;
    let spread: Vec<String> = (0..8).map(|i| format!("spread-{i}")).collect();
    for name in &spread {
        env.create_token(name, token(&format!("customer-{name}"))).await;
    }
    let mut before = std::collections::BTreeMap::new();
    for name in spread.iter().chain([&"missing".to_owned()]) {
        env.wait_for_ready(name, "True", "TokenValid").await;
        before.insert(name.clone(), env.on_secret(name).await.unwrap().fingerprint);
    }
    env.operator.kill();
    env.secrets().delete("missing", &DeleteParams::default()).await.unwrap();
    // Down until every token is overdue and the short one is under 90 s from expiry.
    support::eventually("all overdue, one urgent", Duration::from_secs(40), || async {
        let now = jiff::Timestamp::now();
        let on_secrets = env.all_on_secrets().await;
        for (name, on_secret) in &on_secrets {
            // Overdue by more than a moment (a renewal a second late is not a restart's).
            if on_secret.next_refresh_at > now - std::time::Duration::from_secs(4) {
                return None;
            }
            if name == "urgent" && on_secret.expires_at?.duration_since(now).as_secs() > 88 {
                return None;
            }
        }
        // All but the deleted one.
        (on_secrets.len() == 9).then_some(())
    })
    .await;
    let sampler = support::faults::SecretSampler::start(env.client.clone(), &env.namespace);
    support::eventually("a first sample of every Secret", Duration::from_secs(10), || async {
        (sampler.samples().len() == 9).then_some(())
    })
    .await;
    let restarted = jiff::Timestamp::now();
    env.operator = Operator::start(&env.namespace, env.fake.ca_pem(), &["--overdue-spread", "12s"]).await;
    env.operator.wait_until_leader(&env.namespace).await;

    let renewed_at = |name: String| {
        let sampler = &sampler;
        async move {
            support::eventually(&format!("{name} renewed"), Duration::from_secs(40), || async {
                if name == "missing" {
                    // It was gone: its first sighting.
                    return sampler.samples().remove(&name)?.first().map(|s| s.at);
                }
                sampler.first_change_after(&name, restarted)
            })
            .await
        }
    };
    let urgent = renewed_at("urgent".into()).await;
    let missing = renewed_at("missing".into()).await;
    let mut spread_at = Vec::new();
    for name in &spread {
        spread_at.push(renewed_at(name.clone()).await);
    }
    let first_spread = *spread_at.iter().min().unwrap();
    let last_spread = *spread_at.iter().max().unwrap();
    assert!(
        urgent <= first_spread && missing <= first_spread,
        "urgent {urgent}, missing {missing}, first of the rest {first_spread}"
    );
    let span = last_spread.duration_since(first_spread);
    assert!(span.as_secs_f64() >= 3.0, "eight overdue tokens renewed within {span:?}: not spread");
    assert!(last_spread.duration_since(restarted).as_secs() <= 20, "spread beyond --overdue-spread");
    eprintln!(
        "FIGURES restart spreading: urgent after {:?}, missing after {:?}, the other eight from {:?} to {:?}",
        urgent.duration_since(restarted),
        missing.duration_since(restarted),
        first_spread.duration_since(restarted),
        last_spread.duration_since(restarted)
    );
}

/// The operator caches ConsentTokens and its Secrets slimmed (`cached_token::slim_consent_token`,
/// then kept as text by `cached_token::CachedToken`; `secret_summary::SecretSummary`) to keep its
/// memory small. What a reconcile derives from the cached
/// copies must be what it derives from the whole objects the API server returns: the same
/// object key, spec, status and refresh request, the same desired Secret, and the written Secret
/// recognised as intact and as the spec wants it (so no rewrite and no refetch).
#[tokio::test]
async fn a_cached_object_has_every_field_the_reconcile_reads() {
    use consent_token_operator::cache::cached_token::CachedToken;
    use consent_token_operator::cache::cached_token::slim_consent_token;
    use consent_token_operator::provider::token::Token;
    use consent_token_operator::reconcile::{target_secret, token_record};
    use kube::Resource;
    use kube::runtime::reflector::ObjectRef;

    let env = TestEnv::start("cache").await;
    env.fdx_token("mx", "customer-1").await;
    env.wait_for_ready("mx", "True", "TokenValid").await;
    // What users and their tools put on objects, next to the operator's own annotation.
    let whole_object = serde_json::to_string(&env.tokens().get("mx").await.unwrap()).unwrap();
    let patch = serde_json::json!({"metadata": {
        "labels": {"team": "web", "app.kubernetes.io/part-of": "shop"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": whole_object, "example.com/owner": "web"}}});
    env.tokens().patch("mx", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let requested = env.request_refresh("mx").await;
    let full = support::eventually("the refresh request handled", Duration::from_secs(20), || async {
        let ct = env.tokens().get("mx").await.ok()?;
        let status = ct.status.as_ref()?;
        (status.refresh_requested_at.as_deref() == Some(requested.as_str())).then_some(ct)
    })
    .await;

    let mut slimmed = full.clone();
    slim_consent_token(&mut slimmed);
    let cached = CachedToken::new(slimmed).decode().expect("decodes");
    assert!(cached.metadata.managed_fields.is_none() && cached.metadata.labels.is_none(), "something was dropped");
    assert_eq!(ObjectRef::from_obj(&cached), ObjectRef::from_obj(&full));
    assert_eq!((cached.uid(), cached.meta().generation), (full.uid(), full.meta().generation));
    assert_eq!(cached.spec, full.spec);
    assert_eq!(cached.status, full.status);
    let refresh = |ct: &consent_token_operator::api::crd::ConsentToken| {
        ct.annotations().get(consent_token_operator::api::annotations::REFRESH_REQUESTED_AT).cloned()
    };
    assert_eq!(refresh(&cached), Some(requested));

    let summary =
        consent_token_operator::cache::secret_summary::SecretSummary::of(&env.secrets().get("mx").await.unwrap());
    let record = token_record::read(&summary, cached.target_key()).expect("the cached Secret's token is intact");
    assert!(target_secret::matches(&summary, &cached, &record), "the cached Secret is as the spec wants it");
    let token = Token::new("header.payload.signature".into());
    assert_eq!(target_secret::desired(&cached, &token, &record), target_secret::desired(&full, &token, &record));
    assert!(summary.is_controlled_by(&cached));
}
