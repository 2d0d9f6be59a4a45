//! A partitioned leader: it must stop writing before a standby can take over, whether its
//! Lease renewals are refused while its reads still succeed, or the network to the API server
//! is cut. Writers are told apart by their own logs ("token written", with timestamps); a test
//! binary of its own because it changes RBAC and cuts connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::chart::{FULLNAME, as_chart_in};
use support::operator::{Launch, Operator, TestEnv};
use support::proxy::{Cut, Proxy, api_server_addr};

const LEASE: Duration = Duration::from_secs(6);

async fn first_log(operator: &Operator, message: &str) -> Timestamp {
    support::eventually(&format!("{} to log {message:?}", operator.identity), Duration::from_secs(30), || async {
        operator.log_times(message).first().copied()
    })
    .await
}

/// The old leader stopped (and wrote its last token) before the new one started writing.
async fn handed_over_without_two_writers(old: &Operator, new: &Operator, cut_at: Timestamp) -> Duration {
    let stopped = first_log(old, "leadership lost").await;
    let leads = first_log(new, "became leader").await;
    let first_write = first_log(new, "token written").await;
    let last_old_write = old.log_times("token written").last().copied().unwrap();
    assert!(stopped < leads, "the old leader stopped at {stopped}, the new one led at {leads}");
    assert!(last_old_write < first_write, "old leader wrote at {last_old_write}, new one at {first_write}");
    let takeover = Duration::try_from(leads.duration_since(cut_at)).unwrap();
    // The Lease lasts 6 s from its last renewal (at most 2 s before the cut); the standby
    // looks at it every 2 s.
    assert!(takeover <= LEASE + Duration::from_secs(3), "takeover took {takeover:?}");
    eprintln!(
        "FIGURES {} -> {}: old leader stopped {:?} after the cut, new leader {takeover:?} after it",
        old.identity,
        new.identity,
        Duration::try_from(stopped.duration_since(cut_at)).unwrap()
    );
    takeover
}

#[tokio::test]
async fn a_partitioned_leader_stops_writing_before_a_standby_takes_over() {
    let setup = TestEnv::setup("partition", &[]).await;
    let (admin, namespace) = (setup.client.clone(), setup.namespace.clone());
    // The chart's RBAC for this namespace: the replica under test runs as its ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let as_chart = as_chart_in(&namespace, dir.path()).await;
    let proxy = Proxy::start(api_server_addr(&as_chart));
    let through_proxy = proxy.kubeconfig(&as_chart, dir.path());

    setup.fake.set_fdx_lifetime(12);
    let launch = Launch { kubeconfig: through_proxy.clone(), ..setup.launch_defaults() };
    let mut env = setup.launch(launch).await;
    let standby = Operator::start(&namespace, env.fake.ca_pem(), &[]).await;
    for i in 0..3 {
        env.fdx_token(&format!("mx-{i}"), &format!("partition-customer-{i}")).await;
    }
    for i in 0..3 {
        env.wait_for_ready(&format!("mx-{i}"), "True", "TokenValid").await;
    }
    support::eventually("renewals by the leader", Duration::from_secs(30), || async {
        (env.operator.log_times("token written").len() >= 6).then_some(())
    })
    .await;
    assert!(standby.log_times("token written").is_empty(), "the standby wrote");

    // 1. Renewals refused, reads still allowed: the Lease keeps naming the leader until it
    //    expires, so only its own clock can tell it to stop.
    let roles: Api<Role> = Api::namespaced(admin.clone(), &namespace);
    let read_only = serde_json::json!({"rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}]});
    let role = format!("{FULLNAME}-leader-election");
    roles.patch(&role, &PatchParams::default(), &Patch::Merge(&read_only)).await.unwrap();
    let revoked = Timestamp::now();
    standby.wait_until_leader(&namespace).await;
    handed_over_without_two_writers(&env.operator, &standby, revoked).await;
    // The old leader stays up as a standby (a lost Lease is no crash), and writes nothing more
    // while the new one renews.
    first_log(&env.operator, "standing by").await;
    let old_writes = env.operator.log_times("token written").len();
    let new_writes = standby.log_times("token written").len();
    support::eventually("renewals by the new leader", Duration::from_secs(30), || async {
        (standby.log_times("token written").len() >= new_writes + 3).then_some(())
    })
    .await;
    assert!(env.operator.is_running(), "the old leader exited");
    assert_eq!(env.operator.log_times("token written").len(), old_writes, "the old leader wrote as a standby");
    // Out of the way for part 2, whose replicas are chosen by who is killed.
    env.operator.kill();

    // 2. The network cut: a new replica (through the proxy, renewals allowed again) takes the
    //    Lease when the current leader is killed, then loses its connection.
    let renew = serde_json::json!({"rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}]});
    roles.patch(&role, &PatchParams::default(), &Patch::Merge(&renew)).await.unwrap();
    let mut killed = standby;
    let second =
        Operator::launch(Launch { kubeconfig: through_proxy.clone(), ..Launch::new(&namespace, env.fake.ca_pem()) })
            .await;
    killed.kill();
    second.wait_until_leader(&namespace).await;
    // The next standby only now, so that the replica under test is the one that took over.
    let third = Operator::start(&namespace, env.fake.ca_pem(), &[]).await;
    support::eventually("renewals by the second leader", Duration::from_secs(30), || async {
        (!second.log_times("token written").is_empty()).then_some(())
    })
    .await;
    proxy.cut(Cut::Drop);
    let cut = Timestamp::now();
    third.wait_until_leader(&namespace).await;
    handed_over_without_two_writers(&second, &third, cut).await;
    env.wait_for_ready("mx-0", "True", "TokenValid").await;
}
