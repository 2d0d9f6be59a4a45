//! The API users and providers write to the operator, as types: the three custom resources
//! (their spec, status and validation rules, which become the CRDs), the host patterns admins
//! and Secret owners write, the egress proxy admins name, and what a provider's 429 answer said. No I/O, no behaviour beyond
//! parsing and checking what was written.
//!
//! May use: [`crate::basics`]. Everything else may use it.

pub mod annotations;
pub mod crd;
pub mod hosts;
pub mod proxy;
pub mod rate_limit;
