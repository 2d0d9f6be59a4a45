//! Consent Token Operator: keeps consent-platform tokens fresh in Kubernetes Secrets.
//!
//! Start at [`runtime::operator::run`] (start-up), [`runtime::controller`] (what is watched) and
//! [`reconcile`] (one ConsentToken, as a pipeline of stages).
//!
//! The folders, from the bottom up; each may use only the ones before it (a test,
//! `architecture::folders_depend_only_downwards`, keeps it so):
//!
//! | folder | owns |
//! |---|---|
//! | [`basics`] | building blocks that know nothing of tokens |
//! | [`api`] | the custom resources, host patterns, a 429's facts: types and validation |
//! | [`error`] | every failure, its reason in status and its metric label |
//! | [`observability`] | metrics |
//! | [`scheduling`] | when to renew and retry, and spreading it |
//! | [`config`] | the command line and its environment variables |
//! | [`provider`] | the providers' clients, the network policy, the one provider lookup |
//! | [`cache`] | what the watches keep between reconciles |
//! | [`reconcile`] | one ConsentToken: observe, resolve, validate, decide, fetch, report |
//! | [`runtime`] | start-up, leader election, the watches' wiring, the HTTP server |
//! | [`plugin`] | `kubectl consent`, which talks only to the API server |

pub mod api;
pub mod basics;
pub mod cache;
pub mod config;
pub mod error;
pub mod observability;
pub mod plugin;
pub mod provider;
pub mod reconcile;
pub mod runtime;
pub mod scheduling;

#[cfg(test)]
mod architecture;
#[cfg(test)]
mod fixtures;
