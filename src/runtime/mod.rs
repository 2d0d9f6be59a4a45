//! Running it: start-up ([`operator::run`]), leader election and its write fence ([`leader`]),
//! the HTTP server for probes and metrics ([`server`]), the wiring of watches, caches and
//! workers ([`controller`]) and the writer of provider objects' status ([`provider_status`]).
//!
//! May use: every folder except [`crate::plugin`]. Nothing else uses it.

pub mod controller;
pub mod leader;
pub mod operator;
pub mod provider_status;
pub mod server;
