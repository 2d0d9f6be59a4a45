//! What the operator tells its operators: Prometheus metrics, per object (expiry, next refresh,
//! failures; forgotten with the object), per process (memory, CPU), per provider (its clock
//! against this node's) and per provider object (Ready), and the Events it publishes. Labels and Events never carry a
//! secret or a customer identifier.
//!
//! May use: [`crate::api`], [`crate::basics`].

pub mod clock_skew;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod object_metrics;
pub mod process_metrics;
pub mod provider_metrics;
