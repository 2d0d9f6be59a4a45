//! Watching and caching: what the operator keeps of the cluster between reconciles, each part
//! fed by one watch through the same protocol ([`crate::basics::watch_cache::WatchCache`]: apply, delete,
//! relist started, relist done).
//!
//! - [`work_queue`]: the ConsentTokens (compressed, [`cached_token`]) and when each is due;
//! - [`owned_secrets`]: the Secrets the operator manages, as [`secret_summary`]s without tokens;
//! - [`secret_names`]: a hash of every other Secret's name;
//! - [`credentials_index`]: which ConsentTokens use which credentials Secret;
//! - [`watch_backoff`], [`watch_filters`]: how the watches reconnect and what wakes a reconcile;
//! - [`undecodable`]: how one object that does not decode is skipped without failing its watch.
//!
//! May use: [`crate::api`], [`crate::basics`], [`crate::error`], [`crate::provider`] (the one
//! provider lookup, to find a ConsentToken's credentials).

pub mod cached_token;
pub mod credentials_index;
pub mod owned_secrets;
pub mod secret_names;
pub mod secret_summary;
pub mod undecodable;
pub mod watch_backoff;

pub mod watch_filters;
pub mod work_queue;
