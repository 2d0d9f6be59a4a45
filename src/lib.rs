//! Consent Token Operator: keeps consent-platform tokens fresh in Kubernetes Secrets.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
pub mod crd;
pub mod leader;
pub mod error;
pub mod metrics;
pub mod provider;
pub mod schedule;
pub mod calendar;
pub mod token;
pub mod credentials;
pub mod status;
pub mod target_secret;
pub mod reconcile;
pub mod config;
pub mod controller;
pub mod operator;
pub mod server;
