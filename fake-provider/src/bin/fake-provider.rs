//! Runs the fake provider as a process, for the demo and the benchmark.
use std::time::Duration;

use clap::Parser;

/// A fake OneTrust and MX / FDX token API over HTTPS with a generated test CA.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Write the test CA certificate (PEM) here, for the operator's --extra-ca-bundle.
    #[arg(long)]
    ca_out: std::path::PathBuf,
    /// A OneTrust OAuth client, as ID:SECRET (repeatable).
    #[arg(long = "onetrust-client", value_parser = parse_pair)]
    onetrust_clients: Vec<(String, String)>,
    /// An MX / FDX API client, as ID:SECRET (repeatable).
    #[arg(long = "fdx-client", value_parser = parse_pair)]
    fdx_clients: Vec<(String, String)>,
    /// `expires_in` of OneTrust access tokens, seconds.
    #[arg(long, default_value_t = 3600)]
    oauth_expires_in: i64,
    /// Lifetime of MX / FDX tokens, seconds.
    #[arg(long, default_value_t = 300)]
    fdx_lifetime: u64,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| "expected ID:SECRET".to_owned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let fake = fake_provider::FakeProvider::start(args.listen).await?;
    std::fs::write(&args.ca_out, fake.ca_pem())?;
    for (id, secret) in &args.onetrust_clients {
        fake.add_onetrust_client(id, secret);
    }
    for (id, secret) in &args.fdx_clients {
        fake.add_fdx_client(id, secret);
    }
    fake.set_oauth_expires_in(args.oauth_expires_in);
    fake.set_fdx_lifetime(args.fdx_lifetime);
    println!("listening {}", fake.base_url());
    let _ = tokio::signal::ctrl_c().await;
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}
