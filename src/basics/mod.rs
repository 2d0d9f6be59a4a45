//! Small building blocks that know nothing of consent tokens: a compact object key, time
//! arithmetic that saturates instead of panicking, and strings packed into one allocation.
//!
//! May use: nothing in the crate. Everything else may use it.

pub mod object_id;
pub mod packed_strings;
pub mod time_math;
pub mod watch_cache;
