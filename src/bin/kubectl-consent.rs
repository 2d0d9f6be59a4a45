//! `kubectl consent`: the kubectl plugin (kubectl runs `kubectl-consent` from the PATH).
//! Everything is in `consent_token_operator::plugin`.
use std::process::ExitCode;

use clap::Parser;
use consent_token_operator::plugin::{Cli, PluginError, complete, run};

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Run as kubectl_complete-consent (a link to this binary): kubectl's completion asks.
    let mut args = std::env::args();
    let invoked_as = args.next().unwrap_or_default();
    if std::path::Path::new(&invoked_as).file_name().is_some_and(|name| name == complete::COMPLETER) {
        let words: Vec<String> = args.collect();
        return match complete::complete(&words, &mut std::io::stdout()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let cli = Cli::parse();
    match run(cli, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(if matches!(err, PluginError::Usage(_)) { 2 } else { 1 })
        }
    }
}
