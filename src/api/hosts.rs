//! Host patterns and address classes: what a cluster admin and a credentials Secret's owner
//! write to say where credentials may go, and what kind of address an IP is. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The annotation on a credentials Secret that says which provider hosts its values may be sent
/// to (host patterns, see [`HostPatterns`]). A Secret without it is not used as credentials.
pub const ALLOWED_HOSTS_ANNOTATION: &str = "consent.dev/allowed-hosts";

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Public: allowed.
    Public,
    /// Loopback, private, shared (CGNAT) or unique-local: only inside an allowed network.
    Private,
    /// Link-local (where cloud metadata services live), a known metadata address, unspecified,
    /// multicast or broadcast: never.
    Forbidden,
}

/// Which rule an address falls under. IPv4-mapped IPv6 addresses are judged as IPv4.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip.to_canonical() {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

/// Cloud metadata services outside the link-local range: Alibaba Cloud's, and Azure's wire
/// server (a public address every Azure VM reaches).
const METADATA_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(100, 100, 100, 200), Ipv4Addr::new(168, 63, 129, 16)];
/// AWS's metadata service over IPv6 (inside the unique-local range).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip.is_link_local() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a == 0 {
        return AddressClass::Forbidden;
    }
    if METADATA_V4.contains(&ip) {
        return AddressClass::Forbidden;
    }
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10, carrier-grade NAT
    let benchmarking = a == 198 && (18..20).contains(&b); // 198.18.0.0/15
    let protocol = a == 192 && b == 0 && ip.octets()[2] == 0; // 192.0.0.0/24
    if ip.is_loopback() || ip.is_private() || shared || benchmarking || protocol || a >= 240 {
        return AddressClass::Private;
    }
    AddressClass::Public
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    if ip == METADATA_V6 || link_local || ip.is_unspecified() || ip.is_multicast() {
        return AddressClass::Forbidden;
    }
    // NAT64 (64:ff9b::/96) carries an IPv4 address: judge that one.
    if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    let unique_local = first & 0xfe00 == 0xfc00;
    let site_local = first & 0xffc0 == 0xfec0;
    if ip.is_loopback() || unique_local || site_local {
        return AddressClass::Private;
    }
    AddressClass::Public
}

/// Host patterns: `*` (any host), an exact name (`app-eu.onetrust.com`, `10.0.0.5`), or
/// `*.suffix` (any name below `suffix`, not `suffix` itself). Case does not matter; ports are
/// not part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPatterns(Vec<String>);

impl HostPatterns {
    pub fn any() -> Self {
        Self(vec!["*".into()])
    }

    /// Parses a comma- or whitespace-separated list. An empty list allows nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for pattern in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
            let pattern = pattern.to_ascii_lowercase();
            let name = pattern.strip_prefix("*.").unwrap_or(&pattern);
            let valid = pattern == "*"
                || (!name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
                    && !name.starts_with('.')
                    && !name.ends_with('.'));
            if !valid {
                return Err(format!(
                    "{pattern:?} is not a host pattern: use a host name (app-eu.onetrust.com), *.suffix (*.onetrust.com) or *"
                ));
            }
            patterns.push(pattern);
        }
        Ok(Self(patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` (a name or an IP address, without port) matches a pattern.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.0.iter().any(|pattern| match pattern.strip_prefix("*.") {
            _ if pattern == "*" => true,
            Some(suffix) => {
                host.len() > suffix.len() + 1 && host.ends_with(suffix) && {
                    let cut = host.len() - suffix.len() - 1;
                    host.as_bytes().get(cut) == Some(&b'.')
                }
            }
            None => *pattern == host,
        })
    }
}

impl std::fmt::Display for HostPatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

impl std::str::FromStr for HostPatterns {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// Networks of loopback, private and other internal addresses the admin allows providers in,
/// from a comma-separated list of CIDRs (`127.0.0.0/8,::1/128`); empty allows none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrivateNetworks(Vec<IpNet>);

impl PrivateNetworks {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl std::str::FromStr for PrivateNetworks {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.parse::<IpNet>().map_err(|_| format!("{n:?} is not a network such as 10.0.0.0/8 or ::1/128")))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// Addresses of each class, for the tests here and of the policy built on them.
#[cfg(test)]
pub(crate) const FORBIDDEN_EXAMPLES: &[&str] = &[
    "169.254.169.254",
    "169.254.0.1",
    "fe80::1",
    "fd00:ec2::254",
    "100.100.100.200",
    "168.63.129.16",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
];
#[cfg(test)]
pub(crate) const PRIVATE_EXAMPLES: &[&str] =
    &["127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1", "::ffff:10.0.0.1"];
#[cfg(test)]
pub(crate) const PUBLIC_EXAMPLES: &[&str] = &["8.8.8.8", "52.1.2.3", "2606:4700::1111"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_exact_names_and_subdomains_only() {
        let patterns = HostPatterns::parse("app-eu.onetrust.com, *.mx.com LOCALHOST").unwrap();
        assert!(patterns.allows("app-eu.onetrust.com"));
        assert!(patterns.allows("App-EU.onetrust.com."));
        assert!(!patterns.allows("app.onetrust.com"));
        assert!(patterns.allows("int.mx.com") && patterns.allows("a.b.mx.com"));
        assert!(!patterns.allows("mx.com"), "*.suffix is below the suffix only");
        assert!(!patterns.allows("evilmx.com"));
        assert!(patterns.allows("localhost"));
        assert!(HostPatterns::any().allows("anything.example"));
        assert!(!HostPatterns::parse("").unwrap().allows("a"));
        for bad in ["https://x.com", "*x.com", "x.com/path", "*.", ".x.com"] {
            assert!(HostPatterns::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn addresses_fall_into_their_class() {
        for ip in FORBIDDEN_EXAMPLES.iter().chain(&["255.255.255.255"]) {
            assert_eq!(classify(ip.parse().unwrap()), AddressClass::Forbidden, "{ip}");
        }
        for ip in PRIVATE_EXAMPLES.iter().chain(&["198.18.0.1"]) {
            assert_eq!(classify(ip.parse().unwrap()), AddressClass::Private, "{ip}");
        }
        for ip in PUBLIC_EXAMPLES.iter().chain(&["64:ff9b::808:808"]) {
            assert_eq!(classify(ip.parse().unwrap()), AddressClass::Public, "{ip}");
        }
        let networks: PrivateNetworks = "127.0.0.0/8, ::1/128".parse().unwrap();
        assert!(networks.contains("127.0.0.2".parse().unwrap()) && !networks.contains("10.0.0.1".parse().unwrap()));
        assert_eq!("".parse::<PrivateNetworks>().unwrap(), PrivateNetworks::default());
        assert!("10.0.0.0".parse::<PrivateNetworks>().is_err());
    }
}
