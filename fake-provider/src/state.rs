//! What the fake provider knows (clients, versions, lifetimes), the faults it is told to
//! inject, and what it counts. Shared by every handler behind one mutex: it is a test double.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// The three upstream endpoints, for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// OneTrust `POST /api/access/v1/oauth/token`.
    OneTrustOAuth,
    /// OneTrust `GET /api/consentmanager/v1/collectionpoints/{guid}/token`.
    CollectionPointToken,
    /// MX / FDX `POST /api/{version}/token`.
    FdxToken,
}

/// A misbehaviour to inject into answers of one endpoint.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `Retry-After` set to this exact text (seconds or an HTTP date), plus the
    /// OneTrust `ot-*` headers.
    RateLimited { retry_after: String },
    /// Answer with this status code and an empty body.
    Status(u16),
    /// Wait this long before answering normally.
    Slow(Duration),
    /// Answer 200 with this body and `content-type: application/json`.
    Garbage(String),
    /// Wait this long, then answer with `then` (a host that answers slowly and uselessly: every
    /// request holds its caller, and the answer is no failure a circuit breaker counts).
    Late { delay: Duration, then: Box<Fault> },
    /// 429 with `Retry-After` and `ot-period` set to these exact texts.
    RateLimitedFor { retry_after: String, period: String },
    /// 503 with `Retry-After` set to this exact text.
    Unavailable { retry_after: String },
}

#[derive(Clone, Debug)]
struct FaultRule {
    fault: Fault,
    /// How many more answers get it; `None` means until cleared.
    remaining: Option<u32>,
}

/// How the collection point token is put in the body (the OneTrust document contradicts itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectionPointBody {
    /// `{"token": "eyJ..."}`, what every public client reads.
    Object,
    /// `"eyJ..."`, a JSON string, as the schema says.
    JsonString,
    /// The bare token as `text/plain`.
    RawText,
}

pub(crate) struct Issued {
    pub client_id: String,
    pub expires_at: jiff::Timestamp,
}

pub(crate) struct State {
    pub onetrust_clients: HashMap<String, String>,
    pub fdx_clients: HashMap<String, String>,
    pub access_tokens: HashMap<String, Issued>,
    pub oauth_expires_in: i64,
    pub fdx_lifetime: u64,
    /// How far this provider's clock is ahead of the machine's (seconds; negative: behind).
    pub clock_offset: i64,
    pub collection_point_versions: HashMap<String, i64>,
    pub collection_point_body: CollectionPointBody,
    /// The OAuth endpoint takes form-urlencoded (OneTrust's sample code) instead of multipart.
    pub oauth_sample_code: bool,
    faults: HashMap<Endpoint, FaultRule>,
    /// Requests allowed per client id and endpoint in a minute (no entry: no limit).
    per_minute: HashMap<Endpoint, u32>,
    /// Per endpoint and client id: when its minute started, and the requests in it.
    minutes: HashMap<(Endpoint, String), (std::time::Instant, u32)>,
    counts: HashMap<Endpoint, u64>,
    status_counts: HashMap<(Endpoint, u16), u64>,
}

impl State {
    pub fn new() -> Self {
        Self {
            onetrust_clients: HashMap::new(),
            fdx_clients: HashMap::new(),
            access_tokens: HashMap::new(),
            oauth_expires_in: 3600,
            fdx_lifetime: 300,
            clock_offset: 0,
            collection_point_versions: HashMap::new(),
            collection_point_body: CollectionPointBody::Object,
            oauth_sample_code: false,
            faults: HashMap::new(),
            // OneTrust documents 1,000 a minute per endpoint (its 200,000 an hour per account
            // cannot be reached under two endpoints' minute limits); MX publishes none.
            per_minute: HashMap::from([(Endpoint::OneTrustOAuth, 1000), (Endpoint::CollectionPointToken, 1000)]),
            minutes: HashMap::new(),
            counts: HashMap::new(),
            status_counts: HashMap::new(),
        }
    }

    /// The time on this provider's clock: what its tokens' `iat` and `exp` are written from.
    pub fn clock(&self) -> jiff::Timestamp {
        let now = jiff::Timestamp::now();
        now.checked_add(jiff::SignedDuration::from_secs(self.clock_offset)).unwrap_or(now)
    }

    pub fn set_fault(&mut self, endpoint: Endpoint, fault: Option<Fault>, times: Option<u32>) {
        match fault {
            Some(fault) => {
                self.faults.insert(endpoint, FaultRule { fault, remaining: times });
            }
            None => {
                self.faults.remove(&endpoint);
            }
        }
    }

    pub fn set_rate_limit(&mut self, endpoint: Endpoint, per_minute: Option<u32>) {
        match per_minute {
            Some(n) => self.per_minute.insert(endpoint, n),
            None => self.per_minute.remove(&endpoint),
        };
    }

    /// Counts an authenticated request of `client` against its minute; over the limit, what
    /// the 429 says: seconds left in the minute, the limit, and the requests made.
    pub fn spend(&mut self, endpoint: Endpoint, client: &str) -> Option<(u64, u32, u32)> {
        let allowed = *self.per_minute.get(&endpoint)?;
        let now = std::time::Instant::now();
        let minute = Duration::from_secs(60);
        let (started, made) = self.minutes.entry((endpoint, client.to_owned())).or_insert((now, 0));
        if now.duration_since(*started) >= minute {
            (*started, *made) = (now, 0);
        }
        *made += 1;
        (*made > allowed).then(|| ((minute - now.duration_since(*started)).as_secs().max(1), allowed, *made))
    }

    /// Counts a request and returns the fault to apply to it, if any.
    pub fn arrive(&mut self, endpoint: Endpoint) -> Option<Fault> {
        *self.counts.entry(endpoint).or_default() += 1;
        let rule = self.faults.get_mut(&endpoint)?;
        let fault = rule.fault.clone();
        if let Some(remaining) = rule.remaining.as_mut() {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.faults.remove(&endpoint);
            }
        }
        Some(fault)
    }

    pub fn answered(&mut self, endpoint: Endpoint, status: u16) {
        *self.status_counts.entry((endpoint, status)).or_default() += 1;
    }

    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.counts.get(&endpoint).copied().unwrap_or(0)
    }

    pub fn count_status(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.status_counts.get(&(endpoint, status)).copied().unwrap_or(0)
    }

    pub fn stats(&self) -> serde_json::Value {
        let mut by_endpoint = serde_json::Map::new();
        for endpoint in [Endpoint::OneTrustOAuth, Endpoint::CollectionPointToken, Endpoint::FdxToken] {
            let mut statuses = serde_json::Map::new();
            for ((e, status), n) in &self.status_counts {
                if *e == endpoint {
                    statuses.insert(status.to_string(), (*n).into());
                }
            }
            let key =
                serde_json::to_value(endpoint).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            by_endpoint.insert(key, serde_json::json!({"requests": self.count(endpoint), "statuses": statuses}));
        }
        serde_json::Value::Object(by_endpoint)
    }
}

pub(crate) type Shared = std::sync::Arc<Mutex<State>>;
