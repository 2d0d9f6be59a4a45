//! How a watch retries after an error: from a quarter second, doubling, at most 5 seconds
//! apart, with jitter, and from the start again after the first success.
//!
//! kube-runtime's default backoff goes up to 30 seconds and only starts over after two quiet
//! minutes: after an API server restart, watches came back up to a minute late (measured by
//! `tests/apiserver_outage.rs`), and a ConsentToken created meanwhile waited that long. The
//! API server's cost of this is one request per watch every few seconds while it is down.
// Durations here are small and bounded.
#![deny(clippy::arithmetic_side_effects)]

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const MOST: Duration = Duration::from_secs(5);

pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let this = self.next;
        self.next = self.next.saturating_mul(2).min(MOST);
        // Up to a fifth less, so that many watches do not retry in step.
        let jitter = this.mul_f64(rand::random_range(0.0..0.2));
        Some(this.saturating_sub(jitter))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_five_seconds_and_starts_over_after_a_success() {
        let mut backoff = WatchBackoff::default();
        let waits: Vec<Duration> = backoff.by_ref().take(8).collect();
        assert!(waits[0] <= FIRST && waits[0] >= FIRST.mul_f64(0.8));
        assert!(waits.iter().all(|w| *w <= MOST));
        assert!(waits[7] >= MOST.mul_f64(0.8), "{waits:?}");
        backoff.reset();
        assert!(backoff.next().unwrap() <= FIRST);
    }
}
