//! Prints the project's CustomResourceDefinitions as YAML, one document each:
//! `cargo run --bin crdgen > crds/consent.dev.yaml` (see `scripts/generate`).
use consent_token_operator::api::crd::{ClusterConsentProvider, ConsentProvider, ConsentToken};
use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    let crds = [ConsentToken::crd(), ConsentProvider::crd(), ClusterConsentProvider::crd()];
    let documents: Result<Vec<String>, _> = crds.iter().map(serde_yaml::to_string).collect();
    print!("{}", documents?.join("---\n"));
    Ok(())
}
