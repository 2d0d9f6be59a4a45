//! A throwaway certificate authority and a server certificate for `localhost`, 127.0.0.1 and
//! `*.fake.test` (many names for one server, which tests map to 127.0.0.1 in the operator's own
//! `/etc/hosts`).

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// PEM material for the fake provider's HTTPS listener.
pub struct TestPki {
    /// The CA certificate clients must trust (for the operator: `--extra-ca-bundle`).
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

pub fn generate() -> Result<TestPki, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "consent fake-provider test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "*.fake.test".to_owned()])?;
    server_params.distinguished_name.push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &ca)?;
    Ok(TestPki { ca_pem: ca.pem(), server_cert_pem: server_cert.pem(), server_key_pem: server_key.serialize_pem() })
}
