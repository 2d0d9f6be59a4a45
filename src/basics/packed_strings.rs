//! A list of optional strings in one allocation, for records the operator keeps per object.
//!
//! Why: a string of its own costs at least 32 bytes of heap plus its 16- or 24-byte handle, and
//! a cached Secret summary has some twenty of them (names, uids, annotation keys and values,
//! fingerprints). Packed, they cost their bytes and a 4-byte header each, in one allocation
//! (docs/performance: a Secret summary about 0.35 KB instead of 1.2 KB).
//!
//! Each entry is a little-endian `u32` header followed by the string's bytes. The header is the
//! length, or [`ABSENT`], or [`COMMON`] plus the index of one of the caller's common strings
//! (kept once in the program, not per record).

use std::fmt;

const ABSENT: u32 = u32::MAX;
const COMMON: u32 = 1 << 31;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct PackedStrings(Box<[u8]>);

impl PackedStrings {
    /// Packs `items` in order; a string found in `common` is kept as its index there. A string
    /// of 2 GiB or more (none can come from the API server) is kept as absent.
    pub fn new<'a>(common: &[&str], items: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut bytes = Vec::new();
        for item in items {
            let common_index = item.and_then(|s| common.iter().position(|c| *c == s));
            let header = match (item, common_index.and_then(|i| u32::try_from(i).ok())) {
                (None, _) => ABSENT,
                (Some(_), Some(index)) if index < COMMON => COMMON | index,
                (Some(s), _) => match u32::try_from(s.len()) {
                    Ok(len) if len < COMMON => len,
                    _ => ABSENT,
                },
            };
            bytes.extend_from_slice(&header.to_le_bytes());
            if header < COMMON
                && let Some(s) = item
            {
                bytes.extend_from_slice(s.as_bytes());
            }
        }
        Self(bytes.into_boxed_slice())
    }

    /// The strings in the order they were packed; `common` must be the list they were packed
    /// with.
    pub fn iter<'a>(&'a self, common: &'a [&'a str]) -> impl Iterator<Item = Option<&'a str>> + 'a {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (header, after) = rest.split_first_chunk::<4>()?;
            let header = u32::from_le_bytes(*header);
            let (item, after) = match header {
                ABSENT => (None, after),
                h if h >= COMMON => (common.get((h - COMMON) as usize).copied(), after),
                len => {
                    // Written from a `&str` by `new`: whole characters, so this cannot fail.
                    let (s, after) = after.split_at_checked(len as usize)?;
                    (std::str::from_utf8(s).ok(), after)
                }
            };
            rest = after;
            Some(item)
        })
    }
}

impl fmt::Debug for PackedStrings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackedStrings({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const COMMON_WORDS: [&str; 2] = ["consent.dev/managed-by", "true"];

    #[test]
    fn strings_come_back_in_order_common_ones_without_their_bytes() {
        let items = [Some("web"), None, Some(""), Some("true"), Some("consent.dev/managed-by"), Some("ünïcode")];
        let packed = PackedStrings::new(&COMMON_WORDS, items);
        assert_eq!(packed.iter(&COMMON_WORDS).collect::<Vec<_>>(), items);
        assert_eq!(packed.0.len(), 6 * 4 + "web".len() + "ünïcode".len());
    }

    proptest! {
        #[test]
        fn any_strings_come_back_as_they_went_in(items in proptest::collection::vec(proptest::option::of(".*"), 0..20)) {
            let packed = PackedStrings::new(&COMMON_WORDS, items.iter().map(Option::as_deref));
            let back: Vec<Option<String>> = packed.iter(&COMMON_WORDS).map(|s| s.map(str::to_owned)).collect();
            prop_assert_eq!(back, items);
        }
    }
}
