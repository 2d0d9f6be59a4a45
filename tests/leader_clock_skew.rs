//! The leader's wall clock 5 s behind the standby's (libfaketime), on the chart's default
//! Lease: when its Lease renewals are refused (its reads still succeed, so the Lease keeps
//! naming it), it must stop writing before the standby starts. A fence that compared the
//! Lease's `renewTime` across nodes would let this leader write 5 s into its successor's
//! time; this one times everything on each replica's own monotonic clock. A test binary of its
//! own because it changes RBAC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::{Patch, PatchParams};
use support::chart::{FULLNAME, as_chart_in};
use support::faults::chart_lease_duration;
use support::operator::{Launch, Operator, TestEnv};

async fn first_log(operator: &Operator, message: &str) -> Timestamp {
    support::eventually(&format!("{} to log {message:?}", operator.identity), Duration::from_secs(60), || async {
        operator.log_times(message).first().copied()
    })
    .await
}

#[tokio::test]
async fn a_leader_whose_clock_is_behind_stops_writing_before_the_standby_starts() {
    let setup = TestEnv::setup("clock-skew", &[]).await;
    let (admin, namespace) = (setup.client.clone(), setup.namespace.clone());
    // The chart's RBAC for this namespace: the leader under test runs as its ServiceAccount.
    let dir = tempfile::tempdir().unwrap();
    let as_chart = as_chart_in(&namespace, dir.path()).await;
    setup.fake.set_fdx_lifetime(12);
    let lease_duration = chart_lease_duration();
    let behind = Launch {
        kubeconfig: as_chart,
        lease_duration: lease_duration.clone(),
        clock_offset: Some(-5),
        ..setup.launch_defaults()
    };
    let env = setup.launch(behind).await;
    let standby = Operator::launch(Launch { lease_duration, ..Launch::new(&namespace, env.fake.ca_pem()) }).await;
    for i in 0..3 {
        env.fdx_token(&format!("mx-{i}"), &format!("skew-customer-{i}")).await;
    }
    support::eventually("renewals by the leader", Duration::from_secs(60), || async {
        (env.operator.log_times("token written").len() >= 6).then_some(())
    })
    .await;
    // Its log is on its own clock: 5 s behind the machine's.
    let own: Timestamp =
        env.operator.logs().lines().last().unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(Timestamp::now().duration_since(own).as_secs() >= 4, "the leader's clock is not behind");

    let roles: Api<Role> = Api::namespaced(admin, &namespace);
    let read_only = serde_json::json!({"rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get"]}]});
    roles
        .patch(&format!("{FULLNAME}-leader-election"), &PatchParams::default(), &Patch::Merge(&read_only))
        .await
        .unwrap();
    let revoked = Timestamp::now();
    standby.wait_until_leader(&namespace).await;

    // Every time on the machine's clock (log_times puts the leader's 5 s back).
    let stopped = first_log(&env.operator, "leadership lost").await;
    let leads = first_log(&standby, "became leader").await;
    let first_new_write = first_log(&standby, "token written").await;
    let last_old_write = env.operator.log_times("token written").last().copied().unwrap();
    assert!(stopped < leads, "the old leader stopped at {stopped}, the new one led at {leads}");
    assert!(
        last_old_write < first_new_write,
        "the old leader wrote at {last_old_write}, the new one at {first_new_write}"
    );
    eprintln!(
        "FIGURES leader 5 s behind, {} Lease: old leader stopped {:?} after the revocation, new leader {:?} after it; {:?} between the old leader's last write and the new one's first",
        chart_lease_duration(),
        Duration::try_from(stopped.duration_since(revoked)).unwrap_or_default(),
        Duration::try_from(leads.duration_since(revoked)).unwrap_or_default(),
        Duration::try_from(first_new_write.duration_since(last_old_write)).unwrap_or_default(),
    );
}
