//! The address a provider request is accounted to: per-host slots and circuit breakers are keyed
//! by the resolved address and port, not by the name in the spec. Names are free (one wildcard
//! DNS record gives a tenant unlimited names for one server); addresses are not, so a tenant
//! cannot multiply its share of slots, or split a failing server into many closed breakers, by
//! writing more names.
//!
//! The HTTP client resolves again when it connects (through
//! [`PolicyResolver`](crate::provider::policy::PolicyResolver), which applies
//! the address rules on every connection); this lookup only names the account, and is kept for
//! [`TTL`] so it costs one DNS query per name and half-minute, not one per request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::{Host, Url};

use crate::basics::time_math::instant_after;
use crate::error::Error;
use crate::provider::policy::{UpstreamPolicy, allowed_addresses};

/// How long a name's address is reused.
pub const TTL: Duration = Duration::from_secs(30);
/// Names kept before the first pruning; after one, twice what it left.
const PRUNE_AT: usize = 256;
/// Names kept at most: past this (many names within one TTL), the book starts again empty.
const MAX_NAMES: usize = 4096;

pub struct AddressBook {
    policy: Arc<UpstreamPolicy>,
    names: Mutex<Names>,
}

struct Names {
    addresses: HashMap<String, (IpAddr, Instant)>,
    prune_at: usize,
}

impl AddressBook {
    pub fn new(policy: Arc<UpstreamPolicy>) -> Self {
        Self { policy, names: Mutex::new(Names { addresses: HashMap::new(), prune_at: PRUNE_AT }) }
    }

    /// The address and port `url` is accounted to: its first address the policy allows.
    pub async fn account_of(&self, url: &Url) -> Result<SocketAddr, Error> {
        let port = url.port_or_known_default().unwrap_or(443);
        let name = match url.host() {
            Some(Host::Ipv4(ip)) => return Ok(SocketAddr::new(IpAddr::V4(ip), port)),
            Some(Host::Ipv6(ip)) => return Ok(SocketAddr::new(IpAddr::V6(ip), port)),
            Some(Host::Domain(name)) => name.to_ascii_lowercase(),
            None => return Err(Error::InvalidSpec("the provider URL has no host".into())),
        };
        if let Some(ip) = self.remembered(&name) {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolved = allowed_addresses(&self.policy, &name).await.map_err(|refused| match refused {
            Some(class) => Error::AddressNotAllowed(class),
            None => Error::Transport("the provider host name did not resolve"),
        })?;
        let ip =
            resolved.first().map(SocketAddr::ip).ok_or(Error::Transport("the provider host name did not resolve"))?;
        self.remember(name, ip);
        Ok(SocketAddr::new(ip, port))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remembered(&self, name: &str) -> Option<IpAddr> {
        let names = self.lock();
        let (ip, until) = names.addresses.get(name)?;
        (*until > Instant::now()).then_some(*ip)
    }

    fn remember(&self, name: String, ip: IpAddr) {
        let now = Instant::now();
        let mut names = self.lock();
        if names.addresses.len() >= names.prune_at {
            names.addresses.retain(|_, (_, until)| *until > now);
            if names.addresses.len() >= MAX_NAMES {
                names.addresses = HashMap::new();
            }
            names.prune_at = names.addresses.len().saturating_mul(2).max(PRUNE_AT);
        }
        names.addresses.insert(name, (ip, instant_after(now, TTL)));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().addresses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::hosts::AddressClass;

    fn book(networks: &str) -> AddressBook {
        AddressBook::new(Arc::new(UpstreamPolicy {
            allowed_private_networks: networks.parse().unwrap(),
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn names_of_one_address_share_its_account_and_ports_do_not() {
        let book = book("127.0.0.0/8,::1/128");
        let of = |url: &str| url.parse::<Url>().unwrap();
        let by_name = book.account_of(&of("https://localhost:8443/token")).await.unwrap();
        let by_address = book.account_of(&of("https://127.0.0.1:8443/")).await.unwrap();
        assert!(by_name.ip().is_loopback() && by_name.port() == 8443, "{by_name}");
        if by_name.is_ipv4() {
            assert_eq!(by_name, by_address, "one server, one account, whatever it is called");
        }
        assert_ne!(book.account_of(&of("https://127.0.0.1:9443/")).await.unwrap(), by_address);
    }

    #[tokio::test]
    async fn a_name_with_no_allowed_address_is_refused_before_anything_is_sent() {
        let book = book("");
        let refused = book.account_of(&"https://localhost/".parse().unwrap()).await;
        assert!(matches!(refused, Err(Error::AddressNotAllowed(AddressClass::Private))), "{refused:?}");
        let unknown = book.account_of(&"https://no-such-host.invalid/".parse().unwrap()).await;
        assert!(matches!(unknown, Err(Error::Transport(_))), "{unknown:?}");
    }

    #[tokio::test]
    async fn a_hundred_thousand_names_leave_the_book_bounded() {
        let book = book("");
        // All within one TTL: nothing expires, and the book still stays bounded.
        for n in 0..100_000 {
            book.remember(format!("h{n}.tenant.example"), "192.0.2.1".parse().unwrap());
            assert!(book.len() <= MAX_NAMES, "{} names after {n}", book.len());
        }
    }
}
