//! A loopback TCP proxy between one operator process and the API server, which a test can cut
//! to partition that operator: `Cut::Drop` closes every connection and refuses new ones (the
//! operator sees resets), `Cut::Stall` keeps connections open and forwards nothing (a black
//! hole: requests hang until their timeouts). `heal` restores forwarding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    None,
    Drop,
    Stall,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Cut>,
    // The proxy runs on a thread of its own with its own runtime, so it outlives no test and
    // serves whichever runtime the operator's test uses.
    _thread: std::thread::JoinHandle<()>,
}

impl Proxy {
    /// Forwards `127.0.0.1:<free port>` to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Cut::None);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else { continue };
                    if *watching.borrow() == Cut::Drop {
                        drop(client);
                        continue;
                    }
                    tokio::spawn(pump(client, upstream, watching.clone()));
                }
            });
        });
        Proxy { addr, mode, _thread: thread }
    }

    pub fn cut(&self, how: Cut) {
        self.mode.send_replace(how);
    }

    pub fn heal(&self) {
        self.mode.send_replace(Cut::None);
    }

    /// A copy of `kubeconfig` whose server is this proxy.
    pub fn kubeconfig(&self, kubeconfig: &Path, dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(kubeconfig).unwrap();
        let server = text.lines().find_map(|l| l.trim().strip_prefix("server: ")).expect("server line").to_owned();
        let proxied = text.replace(&server, &format!("https://{}", self.addr));
        let path = dir.join("kubeconfig-proxied");
        std::fs::write(&path, proxied).unwrap();
        path
    }
}

/// The address of the API server a kubeconfig names.
pub fn api_server_addr(kubeconfig: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = text.lines().find_map(|l| l.trim().strip_prefix("server: https://")).expect("server line");
    server.parse().expect("an IP:port server")
}

async fn pump(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Cut>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let (mut a, mut b) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        let cut = *mode.borrow();
        match cut {
            Cut::Drop => return,
            Cut::Stall => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Cut::None => {
                tokio::select! {
                    read = client.read(&mut a) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
                    },
                    read = server.read(&mut b) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
                    },
                    changed = mode.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// A test environment whose operator reaches the API server (as cluster admin) only through a
/// proxy the test can cut; its Lease lasts `lease_duration`.
pub async fn env_through_proxy(
    prefix: &str,
    lease_duration: &str,
) -> (super::operator::TestEnv, Proxy, tempfile::TempDir) {
    let setup = super::operator::TestEnv::setup(prefix, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(api_server_addr(super::kubeconfig()));
    let kubeconfig = proxy.kubeconfig(super::kubeconfig(), dir.path());
    let lease_duration = lease_duration.to_owned();
    let launch = super::operator::Launch { kubeconfig, lease_duration, ..setup.launch_defaults() };
    (setup.launch(launch).await, proxy, dir)
}
