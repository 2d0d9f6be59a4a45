//! An HTTP `CONNECT` proxy on loopback, as a bank's egress proxy: it asks for Basic credentials
//! (407 without them), records every tunnel asked for, and resolves names itself. Names under
//! `fake.test` are the fake providers (127.0.0.1): the operator, which has no such names, can
//! only reach them through here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One `CONNECT` request: its target (`host:port`) and whether its credentials were right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub target: String,
    pub authorized: bool,
}

pub struct ConnectProxy {
    pub addr: SocketAddr,
    tunnels: Arc<Mutex<Vec<Tunnel>>>,
    // On a thread and runtime of its own, as tests/support/proxy.rs, whatever the test's runtime.
    _thread: std::thread::JoinHandle<()>,
}

impl ConnectProxy {
    /// Listens on `127.0.0.1:<free port>`, taking `user` and `password`.
    pub fn start(user: &str, password: &str) -> ConnectProxy {
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy address");
        let seen = tunnels.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
            let Ok(runtime) = runtime else { return };
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, expected.clone(), seen.clone()));
                }
            });
        });
        ConnectProxy { addr, tunnels, _thread: thread }
    }

    /// `http://127.0.0.1:PORT`: what goes into `--https-proxy`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every tunnel asked for so far, in order.
    pub fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn serve(mut client: TcpStream, expected: String, tunnels: Arc<Mutex<Vec<Tunnel>>>) {
    let mut head = Vec::new();
    let mut buf = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let (request, early) = head.split_at(end);
    let text = String::from_utf8_lossy(request);
    let mut lines = text.split("\r\n");
    let first: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    if first.len() != 3 || first[0] != "CONNECT" {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await;
        return;
    }
    let target = first[1].to_owned();
    let authorized = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == expected);
    tunnels.lock().unwrap_or_else(|p| p.into_inner()).push(Tunnel { target: target.clone(), authorized });
    if !authorized {
        let refused = "HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"egress\"\r\ncontent-length: 0\r\n\r\n";
        let _ = client.write_all(refused.as_bytes()).await;
        return;
    }
    let Some((host, port)) = target.rsplit_once(':') else { return };
    let upstream = if host == "localhost" || host.ends_with(".fake.test") {
        TcpStream::connect(("127.0.0.1", port.parse().unwrap_or(0))).await
    } else {
        TcpStream::connect(target.as_str()).await
    };
    let Ok(mut upstream) = upstream else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
        return;
    };
    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        return;
    }
    if !early.is_empty() && upstream.write_all(early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
