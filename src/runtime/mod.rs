//! Running it: start-up ([`operator::run`]), leader election and its write fence ([`leader`]),
//! the HTTP server for probes and metrics ([`server`]), the wiring of watches, caches and
//! workers ([`controller`]), the writer of provider objects' status ([`provider_status`]) and
//! the Events on objects that do not decode ([`undecodable_events`]).
//!
//! May use: every folder except [`crate::plugin`]. Nothing else uses it.

pub mod controller;
pub mod leader;
pub mod operator;
pub mod provider_status;
pub mod server;
pub mod undecodable_events;
