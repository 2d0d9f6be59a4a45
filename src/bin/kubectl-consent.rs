//! `kubectl consent`: the kubectl plugin (kubectl runs `kubectl-consent` from the PATH).
//! Everything is in `consent_token_operator::plugin`.
use std::process::ExitCode;

use clap::Parser;
use consent_token_operator::plugin::{Cli, PluginError, run};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(if matches!(err, PluginError::Usage(_)) { 2 } else { 1 })
        }
    }
}
