//! The work queue's rules: order, triggers, timers, relists.

use super::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn token(name: &str, uid: &str, generation: i64, annotations: &[(&str, &str)]) -> ConsentToken {
    let mut ct = crate::fixtures::fdx_consent_token("https://bank.example");
    ct.metadata.name = Some(name.into());
    ct.metadata.uid = Some(uid.into());
    ct.metadata.generation = Some(generation);
    ct.metadata.annotations =
        Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>());
    ct
}

fn queue() -> WorkQueue {
    WorkQueue::new(Gauge::default())
}

/// What is queued now, in order, each then finished with no timer.
async fn drain(queue: &WorkQueue) -> Vec<String> {
    let mut names = Vec::new();
    while queue.queued.get() > 0 {
        let (id, ct) = queue.next().await;
        names.push(ct.name_any());
        assert_eq!(queue.done(id, Duration::MAX), Watched::Still);
    }
    names
}

fn run_timers(queue: &Arc<WorkQueue>) -> tokio::task::JoinHandle<()> {
    let queue = queue.clone();
    tokio::spawn(async move { queue.run_timers().await })
}

/// `count` new objects in the namespace (`new-0`, uid `0`, ...), queued by their creation.
fn fill(queue: &WorkQueue, count: usize) {
    for n in 0..count {
        queue.apply(token(&format!("new-{n}"), &format!("{n}"), 1, &[]));
    }
}

/// After a fill of 1,000 with one of it served, the renewal's 30 s timer comes due: it goes
/// next, and each of the other 999 once after it.
async fn the_renewal_goes_before_the_rest_of_the_fill(queue: &WorkQueue, renewal: ObjectId) -> Vec<String> {
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(queue.next().await.1.name_any(), "renewal", "its timer moved it ahead of the fill");
    assert_eq!(queue.done(renewal, Duration::MAX), Watched::Still);
    let rest = drain(queue).await;
    assert_eq!(rest.len(), 999, "each of the others once, and the renewal not again");
    assert!(!rest.contains(&"renewal".to_owned()));
    rest
}

#[tokio::test]
async fn new_objects_spec_and_annotation_changes_are_queued_and_status_writes_are_not() {
    let queue = queue();
    assert_eq!(queue.apply(token("a", "1", 1, &[])), Cached::Changed);
    assert_eq!(drain(&queue).await, ["a"]);
    let mut with_status = token("a", "1", 1, &[]);
    with_status.status = Some(Default::default());
    assert_eq!(queue.apply(with_status), Cached::Unchanged);
    assert!(queue.get(ObjectId::of("1")).unwrap().status.is_some(), "the cache is updated");
    assert_eq!(queue.apply(token("a", "1", 2, &[])), Cached::Changed);
    assert_eq!(queue.apply(token("a", "1", 2, &[("consent.dev/refresh-requested-at", "now")])), Cached::Changed);
    assert_eq!(drain(&queue).await, ["a"], "queued once however often it changed meanwhile");
    queue.remove(ObjectId::of("1"));
    assert_eq!(queue.apply(token("a", "1", 2, &[])), Cached::Changed, "recreated after its deletion");
}

#[tokio::test]
async fn objects_are_taken_in_the_order_they_came_due() {
    let queue = queue();
    for (name, uid) in [("c", "3"), ("a", "1"), ("b", "2")] {
        queue.apply(token(name, uid, 1, &[]));
    }
    queue.wake(ObjectId::of("1")); // already queued: keeps its place
    assert_eq!(drain(&queue).await, ["c", "a", "b"]);
}

#[tokio::test]
async fn namespaces_take_turns_and_a_backlog_costs_only_its_own_namespace() {
    let queue = queue();
    let in_namespace = |name: &str, uid: &str, namespace: &str| {
        let mut ct = token(name, uid, 1, &[]);
        ct.metadata.namespace = Some(namespace.into());
        ct
    };
    for n in 0..1000 {
        queue.apply(in_namespace(&format!("noisy-{n}"), &format!("n{n}"), "noisy"));
    }
    queue.apply(in_namespace("victim-a", "v1", "victim"));
    queue.apply(in_namespace("victim-b", "v2", "victim"));
    let first: Vec<String> = drain(&queue).await.into_iter().take(5).collect();
    assert_eq!(first, ["noisy-0", "victim-a", "noisy-1", "victim-b", "noisy-2"]);
}

#[tokio::test]
async fn idle_workers_all_get_work_when_many_objects_come_due_at_once() {
    let queue = Arc::new(queue());
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.next().await.1.name_any() })
        })
        .collect();
    tokio::task::yield_now().await;
    for n in 0..4 {
        queue.apply(token(&format!("t{n}"), &format!("{n}"), 1, &[]));
    }
    let mut taken = Vec::new();
    for worker in workers {
        taken.push(tokio::time::timeout(Duration::from_secs(5), worker).await.unwrap().unwrap());
    }
    taken.sort();
    assert_eq!(taken, ["t0", "t1", "t2", "t3"], "four waiting workers, four objects: one each");
}

#[tokio::test]
async fn a_trigger_during_a_reconcile_runs_it_again_afterwards_not_beside_it() {
    let queue = queue();
    queue.apply(token("a", "1", 1, &[]));
    let (id, _) = queue.next().await;
    queue.wake(id);
    assert_eq!(queue.queued.get(), 0, "not queued while it runs");
    assert_eq!(queue.done(id, Duration::from_secs(3600)), Watched::Still);
    assert_eq!(queue.queued.get(), 1);
    assert_eq!(drain(&queue).await, ["a"]);
}

#[tokio::test]
async fn a_deletion_during_a_reconcile_is_reported_when_it_finishes() {
    let queue = queue();
    queue.apply(token("a", "1", 1, &[]));
    let (id, _) = queue.next().await;
    queue.remove(id);
    assert_eq!(queue.done(id, Duration::from_secs(60)), Watched::DeletedMeanwhile);
    assert_eq!(queue.queued.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_timer_queues_the_object_when_it_comes_due_and_a_trigger_replaces_it() {
    let queue = Arc::new(queue());
    queue.apply(token("a", "1", 1, &[]));
    queue.apply(token("b", "2", 1, &[]));
    let timers = run_timers(&queue);
    let (a, _) = queue.next().await;
    assert_eq!(queue.done(a, Duration::from_secs(60)), Watched::Still);
    let (b, _) = queue.next().await;
    assert_eq!(queue.done(b, Duration::from_secs(30)), Watched::Still);
    let started = Instant::now();
    assert_eq!(queue.next().await.1.name_any(), "b");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(queue.done(b, Duration::from_secs(600)), Watched::Still);
    queue.wake(a); // a trigger before its timer: now; once taken, its timer is gone
    assert_eq!(queue.next().await.1.name_any(), "a");
    assert_eq!(queue.done(a, Duration::MAX), Watched::Still);
    assert_eq!(queue.next().await.1.name_any(), "b");
    assert_eq!(started.elapsed(), Duration::from_secs(30 + 600));
    timers.abort();
}

/// A fill of thousands of new objects in one namespace, and a renewal coming due meanwhile: the
/// renewal goes next, not after the fill, also when a change (its Secret written) queued it
/// behind the fill before its timer came.
#[tokio::test(start_paused = true)]
async fn a_timer_coming_due_goes_before_the_objects_queued_by_changes() {
    let queue = Arc::new(queue());
    let timers = run_timers(&queue);
    queue.apply(token("renewal", "r", 1, &[]));
    let (renewal, _) = queue.next().await;
    assert_eq!(queue.done(renewal, Duration::from_secs(30)), Watched::Still);
    fill(&queue, 1000);
    queue.wake(renewal); // its Secret's watch event: behind the fill
    let (first, _) = queue.next().await;
    assert_eq!(queue.done(first, Duration::MAX), Watched::Still);
    let rest = the_renewal_goes_before_the_rest_of_the_fill(&queue, renewal).await;
    assert_eq!(rest[0], "new-1");
    timers.abort();
}

/// The same, when the Secret's watch event comes while the reconcile that wrote it still runs
/// (the usual order): the object is queued behind the fill for that event, and its timer still
/// moves it ahead when the renewal comes due. Before, the event replaced the timer, and at
/// 12,000 objects renewals planned during the fill waited for its end (p99 lateness 6.6 s).
#[tokio::test(start_paused = true)]
async fn a_change_during_the_reconcile_keeps_the_timer_it_sets() {
    let queue = Arc::new(queue());
    let timers = run_timers(&queue);
    queue.apply(token("renewal", "r", 1, &[]));
    let (renewal, _) = queue.next().await;
    fill(&queue, 1000);
    queue.wake(renewal); // its Secret's watch event, while it runs
    assert_eq!(queue.done(renewal, Duration::from_secs(30)), Watched::Still);
    assert_eq!(queue.queued.get(), 1001, "queued again for the event, behind the fill");
    let (first, _) = queue.next().await;
    assert_eq!(first, ObjectId::of("0"));
    assert_eq!(queue.done(first, Duration::MAX), Watched::Still);
    the_renewal_goes_before_the_rest_of_the_fill(&queue, renewal).await;
    timers.abort();
}

#[test]
fn a_relist_forgets_what_was_deleted_while_the_watch_was_away() {
    let queue = queue();
    for (name, uid) in [("kept", "1"), ("deleted", "2"), ("recreated", "3")] {
        queue.apply(token(name, uid, 1, &[]));
    }
    queue.relist_started();
    for (name, uid) in [("kept", "1"), ("recreated", "4"), ("new", "5")] {
        queue.apply(token(name, uid, 1, &[]));
    }
    let mut gone: Vec<String> = queue.relist_done().iter().map(|ct| ct.uid().unwrap()).collect();
    gone.sort();
    assert_eq!(gone, ["2", "3"]);
    assert_eq!(queue.objects().len(), 3);
    assert_eq!(queue.queued.get(), 3, "1, 4 and 5 queued; the gone ones counted out");
}

#[tokio::test]
async fn an_abandoned_reconcile_is_due_again_and_wake_all_queues_every_object_once() {
    let queue = queue();
    queue.apply(token("a", "1", 1, &[]));
    queue.apply(token("b", "2", 1, &[]));
    let (a, _) = queue.next().await;
    queue.wake(a); // a trigger while it runs
    queue.abandon(a);
    assert_eq!(drain(&queue).await, ["b", "a"], "a is queued again, once");
    queue.wake_all();
    queue.wake_all();
    assert_eq!(queue.queued.get(), 2);
    assert_eq!(drain(&queue).await.len(), 2);
}

#[tokio::test]
async fn a_deleted_object_is_not_handed_out() {
    let queue = queue();
    queue.apply(token("a", "1", 1, &[]));
    queue.apply(token("b", "2", 1, &[]));
    queue.remove(ObjectId::of("1"));
    assert_eq!(queue.queued.get(), 1);
    assert_eq!(drain(&queue).await, ["b"]);
    assert!(queue.get(ObjectId::of("1")).is_none());
    assert_eq!(queue.objects().len(), 1);
}
