//! The egress proxy an admin names (`--https-proxy`, `--no-proxy`), as the `https_proxy` and
//! `no_proxy` conventions of curl and Go write them: types and validation only.

use url::{Host, Url};

/// An HTTP proxy that provider requests go through with `CONNECT` (`http://HOST:PORT`, or
/// `https://` for TLS to the proxy too). Credentials never go in the URL: it is shown in the
/// operator's start-up log and its arguments; they come from their own variables, from a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The proxy's host name, if it is one (not an address).
    pub fn host_name(&self) -> Option<&str> {
        match self.0.host() {
            Some(Host::Domain(name)) => Some(name),
            _ => None,
        }
    }
}

impl std::str::FromStr for ProxyUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        // `host:port` alone, as curl takes it, means http://.
        let with_scheme = if text.contains("://") { text.to_owned() } else { format!("http://{text}") };
        let url = Url::parse(&with_scheme).map_err(|e| format!("not a proxy URL ({e}): write http://HOST:PORT"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the proxy URL's scheme must be http or https, not {}", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the proxy URL must not carry credentials (they would be logged): set \
                 CONSENT_HTTPS_PROXY_USERNAME and CONSENT_HTTPS_PROXY_PASSWORD from a Secret instead"
                .into());
        }
        if url.host().is_none() {
            return Err("the proxy URL has no host".into());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err("the proxy URL is HOST:PORT only, with no path or query".into());
        }
        Ok(Self(url))
    }
}

/// Provider hosts reached directly rather than through the proxy (`--no-proxy`), comma-separated
/// as `no_proxy` is: `*` (every host), a name (`bank.example`, which also covers its subdomains;
/// a leading dot, `.bank.example`, means the same) or an IP address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<String>,
}

impl NoProxy {
    /// Whether requests to `host` skip the proxy.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        self.all
            || self.entries.iter().any(|entry| {
                host == *entry
                    || host.strip_suffix(entry.as_str()).is_some_and(|head| head.ends_with('.') && head.len() > 1)
            })
    }
}

impl std::str::FromStr for NoProxy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.all = true;
                continue;
            }
            let entry =
                entry.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
            let entry = entry.trim_start_matches('[').trim_end_matches(']').to_owned();
            if entry.is_empty() || (entry.contains(['/', ':', ' ']) && entry.parse::<std::net::Ipv6Addr>().is_err()) {
                return Err(format!(
                    "--no-proxy entry {entry:?} is not a host name or address (CIDRs and ports are not supported)"
                ));
            }
            list.entries.push(entry);
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_is_host_and_port_without_credentials() {
        let proxy: ProxyUrl = "http://proxy.corp:3128".parse().unwrap();
        assert_eq!((proxy.url().port(), proxy.host_name()), (Some(3128), Some("proxy.corp")));
        let bare: ProxyUrl = "10.0.0.5:3128".parse().unwrap();
        assert_eq!((bare.url().scheme(), bare.host_name()), ("http", None));
        let err = "http://user:pass@proxy.corp:3128".parse::<ProxyUrl>().unwrap_err();
        assert!(err.contains("CONSENT_HTTPS_PROXY_PASSWORD") && !err.contains("pass@"), "{err}");
        assert!("socks5://proxy:1080".parse::<ProxyUrl>().unwrap_err().contains("scheme"));
        assert!("http://proxy:3128/path".parse::<ProxyUrl>().is_err());
    }

    #[test]
    fn no_proxy_covers_names_their_subdomains_and_addresses() {
        let list: NoProxy = "internal.bank, .corp.example,10.1.2.3, *.svc".parse().unwrap();
        for direct in ["internal.bank", "api.internal.bank", "corp.example", "x.corp.example", "10.1.2.3", "a.svc"] {
            assert!(list.covers(direct), "{direct}");
        }
        for proxied in ["bank", "notinternal.bank", "app-eu.onetrust.com", "10.1.2.30", "svc.example"] {
            assert!(!list.covers(proxied), "{proxied}");
        }
        assert!("*".parse::<NoProxy>().unwrap().covers("anything.example"));
        assert!(!"".parse::<NoProxy>().unwrap().covers("anything.example"));
        assert!("10.0.0.0/8".parse::<NoProxy>().unwrap_err().contains("CIDR"));
    }
}
