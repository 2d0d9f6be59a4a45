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
/// `*.suffix` (any name below `suffix`, not `suffix` itself), each optionally with a port
/// (`bank.example:8443`, `[fd00::5]:8443`): with one, only that port; without, any port the
/// admin allows (`--allowed-provider-ports`). Case does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPatterns(Vec<HostPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// `*`, a name, `*.suffix` or an IP address (IPv6 without brackets), lower case.
    host: String,
    port: Option<u16>,
}

impl HostPatterns {
    pub fn any() -> Self {
        Self(vec![HostPattern { host: "*".into(), port: None }])
    }

    /// Parses a comma- or whitespace-separated list. An empty list allows nothing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for pattern in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|p| !p.is_empty()) {
            let refused = || {
                format!(
                    "{pattern:?} is not a host pattern: use a host name (app-eu.onetrust.com), *.suffix (*.onetrust.com) or *, optionally with a port (bank.example:8443)"
                )
            };
            let lower = pattern.to_ascii_lowercase();
            let (host, port) = split_port(&lower).ok_or_else(refused)?;
            let name = host.strip_prefix("*.").unwrap_or(host);
            let valid = host == "*"
                || (!name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
                    && !name.starts_with('.')
                    && !name.ends_with('.'));
            if !valid {
                return Err(refused());
            }
            patterns.push(HostPattern { host: host.to_owned(), port });
        }
        Ok(Self(patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` at `port` matches a pattern: one without a port, or one naming `port`.
    pub fn allows_at(&self, host: &str, port: u16) -> bool {
        self.0.iter().any(|pattern| pattern.port.is_none_or(|p| p == port) && pattern.matches(host))
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        let pattern = &self.host;
        match pattern.strip_prefix("*.") {
            _ if pattern == "*" => true,
            Some(suffix) => {
                host.len() > suffix.len() + 1 && host.ends_with(suffix) && {
                    let cut = host.len() - suffix.len() - 1;
                    host.as_bytes().get(cut) == Some(&b'.')
                }
            }
            None => *pattern == host,
        }
    }
}

/// `host:port`, `[v6]:port` or a bare host (an IPv6 address without brackets has no port).
fn split_port(pattern: &str) -> Option<(&str, Option<u16>)> {
    let port = |text: &str| text.parse::<u16>().ok().filter(|p| *p != 0);
    if let Some(rest) = pattern.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(port(after.strip_prefix(':')?)?))),
        };
    }
    match pattern.split_once(':') {
        Some((host, text)) if !text.contains(':') => Some((host, Some(port(text)?))),
        _ => Some((pattern, None)),
    }
}

/// A host and port as messages name them: the port only when it is not 443.
pub fn host_port(host: &str, port: u16) -> String {
    if port == 443 { host.to_owned() } else { format!("{host}:{port}") }
}

impl std::fmt::Display for HostPatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, pattern) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            match pattern.port {
                Some(port) if pattern.host.contains(':') => write!(f, "[{}]:{port}", pattern.host)?,
                Some(port) => write!(f, "{}:{port}", pattern.host)?,
                None => f.write_str(&pattern.host)?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for HostPatterns {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// The ports providers may be at (`--allowed-provider-ports`): `*` (any) or a list; default 443.
/// A tenant who could name any port could point many ConsentTokens at ports that never answer
/// (the chart's NetworkPolicy drops what it does not allow, so every other port is a tarpit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderPorts {
    Any,
    Only(Vec<u16>),
}

impl Default for ProviderPorts {
    fn default() -> Self {
        Self::Only(vec![443])
    }
}

impl ProviderPorts {
    pub fn allows(&self, port: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Only(ports) => ports.contains(&port),
        }
    }
}

impl std::fmt::Display for ProviderPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Only(ports) => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                f.write_str(&ports.join(","))
            }
        }
    }
}

impl std::str::FromStr for ProviderPorts {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim() == "*" {
            return Ok(Self::Any);
        }
        text.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{p:?} is not a port (1-65535) or *"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Only)
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
        assert!(patterns.allows_at("app-eu.onetrust.com", 443));
        assert!(patterns.allows_at("App-EU.onetrust.com.", 443));
        assert!(!patterns.allows_at("app.onetrust.com", 443));
        assert!(patterns.allows_at("int.mx.com", 443) && patterns.allows_at("a.b.mx.com", 443));
        assert!(!patterns.allows_at("mx.com", 443), "*.suffix is below the suffix only");
        assert!(!patterns.allows_at("evilmx.com", 443));
        assert!(patterns.allows_at("localhost", 443));
        assert!(HostPatterns::any().allows_at("anything.example", 443));
        assert!(!HostPatterns::parse("").unwrap().allows_at("a", 443));
        for bad in ["https://x.com", "*x.com", "x.com/path", "*.", ".x.com", "x.com:0", "x.com:99999", "[::1]x"] {
            assert!(HostPatterns::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_pattern_with_a_port_matches_that_port_only() {
        let patterns = HostPatterns::parse("bank.example:8443,*.mx.com,[fd00::5]:9443,::1").unwrap();
        assert!(patterns.allows_at("bank.example", 8443));
        assert!(!patterns.allows_at("bank.example", 443), "the port is part of the pattern");
        assert!(patterns.allows_at("int.mx.com", 443) && patterns.allows_at("int.mx.com", 8443), "no port: any");
        assert!(patterns.allows_at("[fd00::5]", 9443) && !patterns.allows_at("fd00::5", 443));
        assert!(patterns.allows_at("::1", 443), "an IPv6 address without brackets has no port");
        assert_eq!(patterns.to_string(), "bank.example:8443,*.mx.com,[fd00::5]:9443,::1");
        assert_eq!(host_port("bank.example", 443), "bank.example");
        assert_eq!(host_port("bank.example", 8443), "bank.example:8443");
    }

    #[test]
    fn provider_ports_are_a_list_or_any() {
        let ports: ProviderPorts = "443, 8443".parse().unwrap();
        assert!(ports.allows(8443) && !ports.allows(80));
        assert!("*".parse::<ProviderPorts>().unwrap().allows(1));
        assert_eq!(ProviderPorts::default().to_string(), "443");
        for bad in ["0", "http", "70000", "443;80"] {
            assert!(bad.parse::<ProviderPorts>().is_err(), "{bad} accepted");
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
