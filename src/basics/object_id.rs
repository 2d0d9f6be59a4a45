//! A compact key for per-object records: the uid's 128 bits instead of its 36-character string,
//! which at 10,000 objects is a few hundred kilobytes per table keyed by uid.

use std::hash::BuildHasher;

/// An object's uid as a number. The API server gives every object a UUID; anything else (objects
/// built by hand in tests) is hashed, which is unique enough for a handful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u128);

impl ObjectId {
    pub fn of(uid: &str) -> Self {
        // Called several times per reconcile: read the digits in place, no string built.
        let mut number: u128 = 0;
        let mut digits = 0;
        for c in uid.chars().filter(|c| *c != '-') {
            match c.to_digit(16) {
                Some(digit) if digits < 32 => {
                    number = (number << 4) | u128::from(digit);
                    digits += 1;
                }
                _ => {
                    digits = 0;
                    break;
                }
            }
        }
        match digits {
            32 => Self(number),
            _ => {
                // Fixed keys: the same uid maps to the same id in every table of the process.
                let hasher = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
                Self(u128::from(hasher.hash_one(uid)) | (1 << 127))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_map_to_their_bits_and_other_strings_apart() {
        let uid = "6f1c3a2e-9b7d-4c1e-8f00-0123456789ab";
        assert_eq!(ObjectId::of(uid), ObjectId(0x6f1c3a2e9b7d4c1e8f000123456789ab));
        assert_ne!(ObjectId::of(uid), ObjectId::of("6f1c3a2e-9b7d-4c1e-8f00-0123456789ac"));
        assert_eq!(ObjectId::of("1"), ObjectId::of("1"));
        assert_ne!(ObjectId::of("1"), ObjectId::of("2"));
        assert_ne!(ObjectId::of(""), ObjectId::of(uid));
    }
}
