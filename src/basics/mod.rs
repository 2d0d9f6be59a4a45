//! Small building blocks that know nothing of consent tokens: a compact object key, time
//! arithmetic that saturates instead of panicking, strings packed into one allocation, and a
//! queue that namespaces take turns at.
//!
//! May use: nothing in the crate. Everything else may use it.

pub mod fair_queue;
pub mod object_id;
pub mod packed_strings;
pub mod time_math;
pub mod watch_cache;
