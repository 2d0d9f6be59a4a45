//! Where the operator may send credentials: the cluster admin's rules for provider URLs, and
//! the address check made after DNS resolution, at connect time.
//!
//! Three layers, each enough on its own to stop a request:
//! - the admin's host patterns (`--allowed-provider-hosts`, default any host): checked when a
//!   spec is validated, before any credential is read;
//! - the credentials Secret's own host patterns (see [`crate::provider::credentials`]): checked before a
//!   credential leaves the operator;
//! - the address rules: link-local and cloud-metadata addresses are never connected to;
//!   loopback, private and other internal addresses only inside `--allowed-private-networks`.
//!   IP literals are checked when the spec is validated; names are checked by the HTTP client's
//!   resolver on every connection, so a name that resolves to another address later (DNS
//!   rebinding) is still held to the rule.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

use crate::api::hosts::{AddressClass, HostPatterns, PrivateNetworks, ProviderPorts, classify, host_port};
use crate::config::UpstreamArgs;
use crate::error::Error;

/// The cluster admin's rules for provider URLs, from the operator's flags.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// Allow `http://` provider URLs (local development only).
    pub allow_insecure_http: bool,
    /// Hosts providers may be at.
    pub allowed_hosts: HostPatterns,
    /// Ports providers may be at.
    pub allowed_ports: ProviderPorts,
    /// Loopback, private and other internal addresses that may be connected to.
    pub allowed_private_networks: PrivateNetworks,
}

impl Default for UpstreamPolicy {
    /// Any public host over https; nothing internal.
    fn default() -> Self {
        Self {
            allow_insecure_http: false,
            allowed_hosts: HostPatterns::any(),
            allowed_ports: ProviderPorts::default(),
            allowed_private_networks: PrivateNetworks::default(),
        }
    }
}

impl UpstreamPolicy {
    pub fn from_args(args: &UpstreamArgs) -> Self {
        Self {
            allow_insecure_http: args.allow_insecure_http,
            allowed_hosts: args.allowed_provider_hosts.clone(),
            allowed_ports: args.allowed_provider_ports.clone(),
            allowed_private_networks: args.allowed_private_networks.clone(),
        }
    }

    /// Checks a provider URL before anything is read or sent: its scheme, its host and port
    /// against the admin's patterns and ports, and an IP literal against the address rules (names are checked when
    /// they are resolved, see [`PolicyResolver`]).
    pub fn check_url(&self, url: &Url, field: &str) -> Result<(), Error> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http => {}
            "http" => {
                return Err(Error::InvalidSpec(
                    "plain http provider URLs are refused; use https (the operator's --allow-insecure-http is for local development only)".into(),
                ));
            }
            _ => return Err(Error::InvalidSpec(format!("{field} must be an https URL"))),
        }
        let host = match url.host() {
            Some(Host::Ipv4(ip)) => {
                self.check_address(IpAddr::V4(ip))?;
                ip.to_string()
            }
            Some(Host::Ipv6(ip)) => {
                self.check_address(IpAddr::V6(ip))?;
                ip.to_string()
            }
            Some(Host::Domain(name)) => name.to_ascii_lowercase(),
            None => return Err(Error::InvalidSpec(format!("{field} has no host"))),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        if !self.allowed_ports.allows(port) {
            return Err(Error::PortNotAllowed { host, port, allowed: self.allowed_ports.to_string() });
        }
        if !self.allowed_hosts.allows_at(&host, port) {
            return Err(Error::ProviderNotAllowed {
                host: host_port(&host, port),
                allowed: self.allowed_hosts.to_string(),
            });
        }
        Ok(())
    }

    /// Whether the operator may connect to `ip`.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Error> {
        let ip = ip.to_canonical();
        match classify(ip) {
            AddressClass::Public => Ok(()),
            AddressClass::Private if self.allowed_private_networks.contains(ip) => Ok(()),
            class => Err(Error::AddressNotAllowed(class)),
        }
    }
}

/// The HTTP client's resolver: the system's (getaddrinfo), with every address the policy does
/// not allow removed. A name left with no address fails with [`RefusedAddresses`], which the
/// HTTP client turns into [`Error::AddressNotAllowed`].
pub struct PolicyResolver {
    policy: Arc<UpstreamPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<UpstreamPolicy>) -> Self {
        Self { policy }
    }
}

/// Every address a name resolved to was refused; the most telling class is kept.
#[derive(Debug, thiserror::Error)]
#[error("every address of the provider host is refused by the operator's address rules")]
pub struct RefusedAddresses(pub AddressClass);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match allowed_addresses(&policy, &host).await {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(Some(class)) => Err(Box::new(RefusedAddresses(class)) as Box<dyn std::error::Error + Send + Sync>),
                // As the system resolver failed: a connection failure, which the breaker counts.
                Err(None) => {
                    Err(Box::new(std::io::Error::new(std::io::ErrorKind::NotFound, "the name did not resolve"))
                        as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

/// The addresses of `host` the policy allows (the system resolver's, getaddrinfo), or why none:
/// the most telling class of the refused ones, `None` when the name did not resolve at all.
pub async fn allowed_addresses(policy: &UpstreamPolicy, host: &str) -> Result<Vec<SocketAddr>, Option<AddressClass>> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await.map_err(|_| None)?.collect();
    let mut refused = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| match policy.check_address(addr.ip()) {
            Ok(()) => true,
            Err(Error::AddressNotAllowed(class)) => {
                refused = Some(refused.map_or(class, |seen| worse(seen, class)));
                false
            }
            Err(_) => false,
        })
        .collect();
    if allowed.is_empty() {
        return Err(Some(refused.unwrap_or(AddressClass::Forbidden)));
    }
    Ok(allowed)
}

fn worse(a: AddressClass, b: AddressClass) -> AddressClass {
    if a == AddressClass::Forbidden || b == AddressClass::Forbidden { AddressClass::Forbidden } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::hosts::{FORBIDDEN_EXAMPLES, PRIVATE_EXAMPLES, PUBLIC_EXAMPLES};

    fn policy(networks: &[&str]) -> UpstreamPolicy {
        UpstreamPolicy { allowed_private_networks: networks.join(",").parse().unwrap(), ..Default::default() }
    }

    #[test]
    fn metadata_and_link_local_are_refused_whatever_is_allowed() {
        let everything = policy(&["0.0.0.0/0", "::/0"]);
        for ip in FORBIDDEN_EXAMPLES {
            let refused = everything.check_address(ip.parse().unwrap());
            assert!(matches!(refused, Err(Error::AddressNotAllowed(AddressClass::Forbidden))), "{ip}");
        }
    }

    #[test]
    fn private_addresses_need_an_allowed_network() {
        let none = UpstreamPolicy::default();
        for ip in PRIVATE_EXAMPLES {
            let refused = none.check_address(ip.parse().unwrap());
            assert!(matches!(refused, Err(Error::AddressNotAllowed(AddressClass::Private))), "{ip}");
        }
        let loopback = policy(&["127.0.0.0/8", "::1/128"]);
        assert!(loopback.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check_address("::1".parse().unwrap()).is_ok());
        assert!(loopback.check_address("10.1.2.3".parse().unwrap()).is_err());
        for ip in PUBLIC_EXAMPLES {
            assert!(none.check_address(ip.parse().unwrap()).is_ok(), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_host_and_literal_address() {
        let policy =
            UpstreamPolicy { allowed_hosts: HostPatterns::parse("*.onetrust.com").unwrap(), ..Default::default() };
        let check = |url: &str| policy.check_url(&url.parse().unwrap(), "spec.fdx.baseUrl");
        assert!(check("https://app.onetrust.com").is_ok());
        assert!(matches!(check("https://bank.example"), Err(Error::ProviderNotAllowed { .. })));
        assert!(matches!(check("https://169.254.169.254"), Err(Error::AddressNotAllowed(AddressClass::Forbidden))));
        assert!(matches!(check("https://[::1]:8443"), Err(Error::AddressNotAllowed(AddressClass::Private))));
        // The URL parser reads odd IPv4 spellings as the address they are.
        assert!(matches!(check("https://0x7f.1"), Err(Error::AddressNotAllowed(AddressClass::Private))));
        assert!(matches!(check("http://app.onetrust.com"), Err(Error::InvalidSpec(_))));
        // Ports are the admin's too: 443 unless --allowed-provider-ports says more.
        let message = check("https://app.onetrust.com:8443").unwrap_err().to_string();
        assert!(message.contains("port 8443") && message.contains("--allowed-provider-ports"), "{message}");
        let more = UpstreamPolicy { allowed_ports: "443,8443".parse().unwrap(), ..policy.clone() };
        assert!(more.check_url(&"https://app.onetrust.com:8443".parse().unwrap(), "f").is_ok());
        let any = UpstreamPolicy { allowed_ports: "*".parse().unwrap(), ..policy.clone() };
        assert!(any.check_url(&"https://app.onetrust.com:1".parse().unwrap(), "f").is_ok());
        let message = check("https://bank.example").unwrap_err().to_string();
        assert!(message.contains("bank.example") && message.contains("*.onetrust.com"), "{message}");
    }
}
