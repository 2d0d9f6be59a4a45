//! Every secret the fakes of this process hand out or are given (client secrets, `id:secret`
//! pairs as in a Basic header, access tokens, tokens), so a test can check that none of them
//! reaches a log, an event, a status or a metric. Off unless a test turns it on: the demo and
//! the benchmark keep nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static RECORDING: AtomicBool = AtomicBool::new(false);
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// From now on, every fake of this process records the secrets it issues or is given.
pub fn record_secrets() {
    RECORDING.store(true, Ordering::Relaxed);
}

/// The secrets recorded so far.
pub fn secrets() -> Vec<String> {
    SECRETS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn remember(value: &str) {
    if RECORDING.load(Ordering::Relaxed) && !value.is_empty() {
        SECRETS.lock().unwrap_or_else(|p| p.into_inner()).push(value.to_owned());
    }
}

/// A client's secret, and the `id:secret` pair its Basic header encodes.
pub(crate) fn remember_client(client_id: &str, client_secret: &str) {
    remember(client_secret);
    remember(&format!("{client_id}:{client_secret}"));
}
