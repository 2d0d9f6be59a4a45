//! `make demo`, as documented: both providers' sample Secrets get tokens (through a
//! ConsentProvider, a ClusterConsentProvider and written out), and Ctrl-C leaves
//! nothing running. Needs the `target/debug` binaries built first (`make test` does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // integration tests: a failure panics

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn secret_token(kubeconfig: &str, namespace: &str, secret: &str, key: &str) -> Option<String> {
    let jsonpath = format!("jsonpath={{.data.{key}}}");
    let out = Command::new("kubectl")
        .args(["get", "secret", secret, "-n", namespace, "-o", &jsonpath])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .ok()?;
    let b64 = String::from_utf8(out.stdout).ok()?;
    let decoded = Command::new("base64").arg("-d").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().ok()?;
    use std::io::Write;
    decoded.stdin.as_ref()?.write_all(b64.as_bytes()).ok()?;
    let token = String::from_utf8(decoded.wait_with_output().ok()?.stdout).ok()?;
    (token.split('.').count() == 3).then_some(token)
}

#[test]
fn make_demo_serves_both_providers_and_ctrl_c_leaves_nothing_behind() {
    let bin = support::repo_root().join("target/debug");
    for name in ["consent-token-operator", "fake-provider"] {
        assert!(bin.join(name).exists(), "target/debug/{name} is missing: run `make test`, which builds it first");
    }
    // `env --default-signal=INT`: a terminal's foreground job has the default SIGINT action,
    // whatever this test's own parent chose (bash cannot trap a signal ignored at its start).
    let mut demo = Command::new("env")
        .args(["--default-signal=INT", "make", "demo"])
        .current_dir(support::repo_root())
        // A safety bound: the demo ends by itself even if this test never sends Ctrl-C.
        .env("DEMO_SECONDS", "180")
        // `make test` built the binaries; cargo test holds the build lock, so no cargo in here.
        .env("DEMO_PREBUILT", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start make demo");
    // What make and the demo say on stderr, kept to check the stop was clean.
    let errors = BufReader::new(demo.stderr.take().unwrap());
    let errors = std::thread::spawn(move || {
        let mut said = String::new();
        for line in errors.lines().map_while(Result::ok) {
            eprintln!("{line}");
            said.push_str(&line);
            said.push('\n');
        }
        said
    });
    let group = demo.id() as i32;
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut kubeconfig = None;
    let mut first_ready = None;
    for line in lines.by_ref() {
        let line = line.expect("demo output");
        eprintln!("{line}");
        if line.contains("first Ready token") {
            first_ready = Some(line.clone());
        }
        if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
            kubeconfig = Some(path.to_owned());
            break;
        }
    }
    let kubeconfig = kubeconfig.expect("the demo prints the KUBECONFIG export");
    assert!(first_ready.is_some(), "the demo reports its first Ready token");
    let demo_dir = std::path::Path::new(&kubeconfig).parent().unwrap().parent().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(60);
    let tokens = loop {
        let mx = secret_token(&kubeconfig, "default", "customer-alice", "token");
        let ot = secret_token(&kubeconfig, "default", "web-signup-token", "requestInformation");
        let shared = secret_token(&kubeconfig, "team-web", "newsletter-signup-token", "requestInformation");
        if let (Some(mx), Some(ot), Some(_)) = (mx, ot, shared) {
            break (mx, ot);
        }
        assert!(Instant::now() < deadline, "the sample Secrets did not get tokens");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_ne!(tokens.0, tokens.1);

    // Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it.
    let sent = Command::new("kill").args(["-s", "INT", "--", &format!("-{group}")]).status().unwrap();
    assert!(sent.success(), "could not signal the demo's process group");
    std::thread::spawn(move || for _ in lines {}); // drain the rest of the output
    let stopping = Instant::now();
    let status = demo.wait().unwrap();
    eprintln!("demo exited with {status} {:?} after Ctrl-C", stopping.elapsed());
    assert!(stopping.elapsed() < Duration::from_secs(60), "Ctrl-C did not stop the demo promptly");
    // Ctrl-C is the way to end the demo: make reports no failed recipe ("Error 130").
    let said = errors.join().unwrap();
    assert!(!said.contains("make: ***"), "make reported the stop as an error:\n{said}");

    let leftover = Command::new("pgrep").args(["-f", demo_dir.to_str().unwrap()]).output().unwrap();
    assert!(leftover.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&leftover.stdout));
    assert!(!demo_dir.exists(), "{} left behind", demo_dir.display());
}
