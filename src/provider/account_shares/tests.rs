use super::*;

const BUDGET: Budget = Budget::per_minute(100);

fn keys() -> [(&'static str, Option<Budget>); 1] {
    [("account", Some(BUDGET))]
}

/// Admits requests of `namespace` until one is held back; returns how many went.
fn send_until_held(shares: &AccountShares<&'static str>, namespace: &str, at: Instant) -> u32 {
    let mut sent = 0;
    while shares.admit_at(&keys(), namespace, at).is_ok() {
        sent += 1;
        assert!(sent <= BUDGET.requests, "never more than the budget");
    }
    sent
}

fn limit(allowed: Option<i64>, period: Option<&str>) -> RateLimit {
    RateLimit {
        retry_after: Duration::from_secs(30),
        capped: false,
        period: period.map(str::to_owned),
        requests_allowed: allowed,
        requests_made: None,
        event_id: None,
    }
}

#[test]
fn a_flood_is_held_back_for_its_namespace_before_the_budget_is_spent() {
    let shares = AccountShares::default();
    let start = Instant::now();
    assert_eq!(send_until_held(&shares, "noisy", start), 75, "alone: three quarters");
    let held = shares.admit_at(&keys(), "noisy", start).unwrap_err();
    assert_eq!((held.share, held.sharing), (75, 1));
    assert_eq!(held.retry_in, BUDGET.period, "until the window ends");
    assert_eq!(send_until_held(&shares, "quiet", start), 25, "a namespace that comes later finds a quarter");
}

#[test]
fn namespaces_that_used_the_account_share_it_equally_in_the_next_window() {
    let shares = AccountShares::default();
    let start = Instant::now();
    send_until_held(&shares, "noisy", start);
    send_until_held(&shares, "quiet", start);
    let next = start + BUDGET.period;
    assert_eq!(send_until_held(&shares, "noisy", next), 50, "noisy first, and still only half");
    assert_eq!(send_until_held(&shares, "quiet", next), 50);
}

#[test]
fn a_namespace_gets_the_account_back_when_the_others_stop() {
    let shares = AccountShares::default();
    let start = Instant::now();
    send_until_held(&shares, "a", start);
    send_until_held(&shares, "b", start);
    // "b" sends nothing for a whole window: from the one after, "a" is alone again.
    assert_eq!(send_until_held(&shares, "a", start + BUDGET.period), 50);
    assert_eq!(send_until_held(&shares, "a", start + BUDGET.period * 2), 75, "work-conserving");
}

#[test]
fn accounts_without_a_budget_are_only_counted_until_a_429_says_one() {
    let shares = AccountShares::default();
    let start = Instant::now();
    let unknown = [("mx", None)];
    for _ in 0..500 {
        shares.admit_at(&unknown, "a", start).expect("no budget: nothing held back");
    }
    // MX publishes no limit; its 429 says none either: what was sent this window is the budget.
    shares.learn(&"mx", &limit(None, None));
    assert!(shares.admit_at(&unknown, "a", start).is_err(), "the learned budget is spent");
    let next = start + DEFAULT_PERIOD;
    assert_eq!((0..).take_while(|_| shares.admit_at(&unknown, "a", next).is_ok()).count(), 375);
}

#[test]
fn what_a_429_says_replaces_the_documented_budget() {
    let shares = AccountShares::default();
    let start = Instant::now();
    shares.admit_at(&keys(), "a", start).unwrap();
    shares.learn(&"account", &limit(Some(8), Some("HOUR")));
    assert_eq!(send_until_held(&shares, "a", start), 5, "three quarters of 8, one already sent");
    let held = shares.admit_at(&keys(), "a", start).unwrap_err();
    assert_eq!(held.period, Duration::from_secs(3600), "the window is the period it said");
    // Nonsense limits (zero, negative, beyond u32) leave the account counted by what was sent.
    for absurd in [0, -5, i64::MAX] {
        shares.learn(&"account", &limit(Some(absurd), Some("FORTNIGHT")));
    }
}

#[test]
fn a_hundred_thousand_accounts_leave_the_map_bounded() {
    let shares = AccountShares::default();
    let start = Instant::now();
    let kept = [("the provider".to_owned(), Some(BUDGET))];
    for i in 0..100_000u64 {
        let at = start + Duration::from_millis(i);
        if i % 1000 == 0 {
            // The provider everybody uses stays in use, and keeps what it learned.
            let _ = shares.admit_at(&kept, "a", at);
        }
        shares.admit_at(&[(format!("tenant-host-{i}"), None)], "tenant", at).unwrap();
        assert!(shares.len() <= MAX_ACCOUNTS, "{} accounts after {i}", shares.len());
    }
}

proptest::proptest! {
    /// Whatever the order and the demands, in the window after everyone first used the account:
    /// never more than the budget, and each namespace gets what it asked for or an equal share.
    #[test]
    fn equal_shares_and_never_more_than_the_budget(
        demands in proptest::collection::vec(0u32..120, 1..6),
        order in proptest::collection::vec(0usize..6, 0..400),
    ) {
        let shares = AccountShares::default();
        let start = Instant::now();
        let names: Vec<String> = (0..demands.len()).map(|i| format!("ns-{i}")).collect();
        for name in &names {
            let _ = shares.admit_at(&keys(), name, start);
        }
        let next = start + BUDGET.period;
        let mut got = vec![0u32; demands.len()];
        // The namespaces ask in the given order, then round-robin until every demand is met or held.
        let rounds = order.into_iter().map(|i| i % demands.len()).chain((0..demands.len()).cycle().take(200 * demands.len()));
        for i in rounds {
            if got[i] < demands[i] && shares.admit_at(&keys(), &names[i], next).is_ok() {
                got[i] += 1;
            }
        }
        let total: u32 = got.iter().sum();
        proptest::prop_assert!(total <= BUDGET.requests);
        let share = BUDGET.requests / u32::try_from(demands.len()).unwrap();
        for (i, demand) in demands.iter().enumerate() {
            let fair = if demands.len() == 1 { BUDGET.share(1) } else { share };
            proptest::prop_assert!(got[i] >= (*demand).min(fair), "ns-{i} got {} of {demand}", got[i]);
        }
    }
}
