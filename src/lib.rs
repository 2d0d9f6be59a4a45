//! Consent Token Operator: keeps consent-platform tokens fresh in Kubernetes Secrets.
//!
//! Start at [`operator::run`] (start-up), [`controller`] (what is watched) and [`reconcile`]
//! (one ConsentToken, as a pipeline of stages).

// The API and its validation.
pub mod crd;
pub mod resolve;
pub mod spec;
// One reconcile and its pure parts.
pub mod cached_token;
pub mod calendar;
pub mod first_tokens;
pub mod reconcile;
pub mod schedule;
pub mod status;
pub mod target_secret;
// Talking to the providers and to Kubernetes.
pub mod api_writes;
pub mod credentials;
pub mod credentials_index;
pub mod hosts;
pub mod owned_secrets;
pub mod packed_strings;
pub mod provider;
pub mod provider_status;
pub mod rate_limit;
pub mod secret_names;
pub mod time_math;
pub mod token;
// Running it.
pub mod config;
pub mod controller;
pub mod leader;
pub mod metrics;
pub mod object_id;
pub mod object_metrics;
pub mod operator;
pub mod plugin;
pub mod process_metrics;
pub mod server;
pub mod watch_backoff;
pub mod watch_filters;
pub mod work_queue;

pub mod error;

#[cfg(test)]
mod architecture;
#[cfg(test)]
mod fixtures;
