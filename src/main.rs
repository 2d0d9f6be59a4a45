use std::process::ExitCode;

use clap::Parser;
use consent_token_operator::config::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = match config.logging.filter(rust_log.as_deref()).map(EnvFilter::try_new) {
        Ok(Ok(filter)) => filter,
        Ok(Err(err)) => {
            eprintln!("error: invalid log filter: {err}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    // Colour only on a terminal: files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    consent_token_operator::observability::logging::init(config.logging.log_format, filter, ansi);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "consent-token-operator starting");
    match consent_token_operator::runtime::operator::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "the operator stopped");
            ExitCode::FAILURE
        }
    }
}
