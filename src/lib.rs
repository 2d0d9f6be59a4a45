//! Consent Token Operator: keeps consent-platform tokens fresh in Kubernetes Secrets.
pub mod crd;
