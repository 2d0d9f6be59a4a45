//! Prints the ConsentToken CustomResourceDefinition as YAML: `cargo run --bin crdgen > crds/consenttokens.consent.dev.yaml`.
use consent_token_operator::crd::ConsentToken;
use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", serde_yaml::to_string(&ConsentToken::crd())?);
    Ok(())
}
