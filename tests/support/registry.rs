//! A real OCI registry on loopback: Debian's `docker-registry` (the CNCF distribution registry),
//! serving TLS with a certificate of a test CA, as a user's own registry would. Stopped when
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Registry {
    /// `127.0.0.1:PORT`, as image references and `oci://` URLs name it.
    pub host: String,
    /// The test CA's certificate (PEM) that clients must trust.
    pub ca_file: PathBuf,
    /// The CA as skopeo's `--cert-dir` wants it (`ca.crt` in a directory).
    pub cert_dir: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let pki = fake_provider::tls::generate().expect("test CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_file = write("ca.pem", &pki.ca_pem);
        let cert = write("server.pem", &pki.server_cert_pem);
        let key = write("server-key.pem", &pki.server_key_pem);
        let cert_dir = dir.path().join("certs");
        std::fs::create_dir(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), &pki.ca_pem).unwrap();
        let host = format!("127.0.0.1:{}", super::operator::free_port());
        let config = write(
            "config.yml",
            &format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\n\
                 http:\n  addr: {host}\n  tls: {{certificate: {}, key: {}}}\n",
                dir.path().join("data").display(),
                cert.display(),
                key.display()
            ),
        );
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect(
                "start docker-registry (Debian's package docker-registry; scripts/control-plane build installs it)",
            );
        let registry = Registry { host, ca_file, cert_dir, child, _dir: dir };
        super::eventually("the registry to answer", Duration::from_secs(30), || async {
            let status = Command::new("skopeo")
                .args(["list-tags", "--cert-dir"])
                .arg(&registry.cert_dir)
                .arg(format!("docker://{}/probe", registry.host))
                .output()
                .ok()?;
            // A registry that answers says the repository is not there.
            let said = String::from_utf8_lossy(&status.stderr);
            (status.status.success() || said.contains("404")).then_some(())
        })
        .await;
        registry
    }

    /// `hosts.toml` for this registry in a containerd `config_path` directory: pulls trust the
    /// test CA.
    pub fn trust_from_containerd(&self, certs_d: &Path) {
        let dir = certs_d.join(&self.host);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = format!(
            "server = \"https://{host}\"\n\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{ca}\"\n",
            host = self.host,
            ca = self.ca_file.display()
        );
        std::fs::write(dir.join("hosts.toml"), hosts).unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
