//! When each token is renewed or retried: the renewal and retry windows (pure), the calendar
//! that spreads plans over the quietest seconds of their window, and the pace of first tokens
//! that keeps a first renewal out of a fill.
//!
//! May use: [`crate::api`], [`crate::basics`], [`crate::error`] (the retry class of a failure).

pub mod calendar;
pub mod first_tokens;
pub mod retry;
pub mod schedule;
