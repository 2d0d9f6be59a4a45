use super::*;

#[tokio::test]
async fn a_failing_host_gets_one_probe_per_cooldown_and_opens_on_success() {
    let guard = HostGuard::new(4);
    for _ in 0..OPEN_AFTER {
        let pass = guard.admit("h:443", "ns").await.unwrap();
        guard.record(pass, Answer::Failing);
    }
    assert!(matches!(guard.admit("h:443", "ns").await, Err(Held::Failing(wait)) if wait <= FIRST_COOLDOWN));
    assert!(guard.admit("other:443", "ns").await.is_ok(), "per host");
    // Cooldown over (simulated): exactly one probe goes.
    guard.hosts.lock().unwrap().hosts.get_mut("h:443").unwrap().breaker.open_until = Some(Instant::now());
    let probe = guard.admit("h:443", "ns").await.unwrap();
    assert_eq!(
        guard.admit("h:443", "ns").await.err(),
        Some(Held::Failing(PROBE_WAIT)),
        "one probe at a time; the others look again as soon as it may have answered"
    );
    guard.record(probe, Answer::Failing);
    let cooldown = guard.hosts.lock().unwrap().hosts["h:443"].breaker.cooldown;
    assert_eq!(cooldown, FIRST_COOLDOWN * 2, "the pause doubles while it fails");
    guard.hosts.lock().unwrap().hosts.get_mut("h:443").unwrap().breaker.open_until = Some(Instant::now());
    let probe = guard.admit("h:443", "ns").await.unwrap();
    guard.record(probe, Answer::Working);
    assert!(guard.admit("h:443", "ns").await.is_ok(), "open again after a successful probe");
}

#[tokio::test]
async fn requests_under_way_are_limited_per_host() {
    let guard = HostGuard::new(2);
    let (a, b) = (guard.admit("tarpit:443", "ns").await.unwrap(), guard.admit("tarpit:443", "ns").await.unwrap());
    assert_eq!(guard.admit("tarpit:443", "ns").await.err(), Some(Held::Busy));
    assert!(guard.admit("healthy:443", "ns").await.is_ok());
    guard.record(a, Answer::Working);
    assert!(guard.admit("tarpit:443", "ns").await.is_ok(), "a slot is free again");
    drop(b);
}

#[tokio::test]
async fn the_cooldown_never_exceeds_its_ceiling() {
    let guard = HostGuard::new(1);
    for _ in 0..100 {
        guard.hosts.lock().unwrap().hosts.entry("h".into()).or_insert_with(|| Host::new(1)).breaker.open_until =
            Some(Instant::now());
        if let Ok(pass) = guard.admit("h", "ns").await {
            guard.record(pass, Answer::Failing);
        }
    }
    assert!(guard.hosts.lock().unwrap().hosts["h"].breaker.cooldown <= MAX_COOLDOWN);
}

fn open_breaker(guard: &HostGuard, host: &str) {
    guard.hosts.lock().unwrap().hosts.get_mut(host).unwrap().breaker.open_until = Some(Instant::now());
}

async fn fail_until_open(guard: &HostGuard, host: &str) {
    for _ in 0..OPEN_AFTER {
        let pass = guard.admit(host, "ns").await.unwrap();
        guard.record(pass, Answer::Failing);
    }
    assert!(matches!(guard.admit(host, "ns").await, Err(Held::Failing(_))));
}

#[tokio::test]
async fn a_probe_that_was_never_sent_lets_the_next_request_probe() {
    let guard = HostGuard::new(4);
    fail_until_open(&guard, "h:443").await;
    open_breaker(&guard, "h:443");
    let probe = guard.admit("h:443", "ns").await.unwrap();
    assert_eq!(guard.admit("h:443", "ns").await.err(), Some(Held::Failing(PROBE_WAIT)), "a probe is under way");
    // Refused before it was sent (say, no allowed address): no answer to report.
    drop(probe);
    let next = guard.admit("h:443", "ns").await.expect("the next request is the probe");
    guard.record(next, Answer::Working);
    assert!(guard.admit("h:443", "ns").await.is_ok(), "open again");
}

#[tokio::test]
async fn a_probe_dropped_while_it_waited_for_its_answer_lets_the_next_request_probe() {
    let guard = Arc::new(HostGuard::new(4));
    fail_until_open(&guard, "h:443").await;
    open_breaker(&guard, "h:443");
    // A reconcile holding the probe is dropped (leadership lost) before the answer came.
    let holder = {
        let guard = guard.clone();
        tokio::spawn(async move {
            let _probe = guard.admit("h:443", "ns").await.unwrap();
            std::future::pending::<()>().await;
        })
    };
    while guard.admit("h:443", "ns").await.err() != Some(Held::Failing(PROBE_WAIT)) {
        tokio::task::yield_now().await;
    }
    holder.abort();
    let _ = holder.await;
    assert!(guard.admit("h:443", "ns").await.is_ok(), "the next request is the probe");
}

#[tokio::test]
async fn a_hundred_thousand_hosts_leave_the_map_bounded() {
    let guard = HostGuard::new(2);
    fail_until_open(&guard, "failing:443").await;
    // Open for longer than the loop can take on a slow machine.
    guard.hosts.lock().unwrap().hosts.get_mut("failing:443").unwrap().breaker.open_until =
        Some(Instant::now() + Duration::from_secs(3600));
    let held = guard.admit("busy:443", "ns").await.unwrap();
    for i in 0..100_000 {
        let host = format!("h{i}.tenant.example:443");
        let pass = guard.admit(&host, "ns").await.unwrap();
        guard.record(pass, if i % 2 == 0 { Answer::Working } else { Answer::Failing });
        assert!(guard.len() <= 2 * PRUNE_AT, "{} hosts after {i}", guard.len());
    }
    // What must not be forgotten is kept: an open breaker and a host with a request under way.
    assert!(matches!(guard.admit("failing:443", "ns").await, Err(Held::Failing(_))), "still open");
    let map = guard.hosts.lock().unwrap();
    assert!(map.hosts.contains_key("busy:443"));
    drop(map);
    drop(held);
}

fn present(guard: &HostGuard, host: &str, namespace: &str) -> usize {
    guard.hosts.lock().unwrap().hosts.get(host).and_then(|h| h.present.get(namespace).copied()).unwrap_or(0)
}

#[tokio::test]
async fn namespaces_that_use_one_host_share_its_slots_and_one_alone_takes_them_all() {
    let guard = Arc::new(HostGuard::new(4));
    let mut noisy = Vec::new();
    for _ in 0..4 {
        noisy.push(guard.admit("shared:443", "noisy").await.expect("alone: every slot"));
    }
    // Another namespace comes and waits for a slot.
    let waiting = {
        let guard = guard.clone();
        tokio::spawn(async move { guard.admit("shared:443", "quiet").await })
    };
    while present(&guard, "shared:443", "quiet") == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(guard.admit("shared:443", "noisy").await.err(), Some(Held::Busy), "over its half: held at once");
    drop(noisy.pop());
    let quiet = waiting.await.unwrap().expect("the freed slot goes to the namespace under its share");
    noisy.truncate(1);
    let second = guard.admit("shared:443", "noisy").await.expect("under its half again");
    assert_eq!(guard.admit("shared:443", "noisy").await.err(), Some(Held::Busy), "two of four is its half");
    drop(quiet);
    let third = guard.admit("shared:443", "noisy").await.expect("alone again: work-conserving");
    drop((noisy, second, third));
    assert_eq!(present(&guard, "shared:443", "noisy"), 0, "nothing kept once nothing is under way");
}
