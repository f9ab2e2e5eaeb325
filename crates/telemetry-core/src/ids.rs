//! Resource ids in LiveKit's format: a prefix and 12 characters of the shortuuid base57 alphabet.
//!
//! Webhook events get `EV_`, analytics events `AE_` and analytics stats `AS_`. Characters are drawn
//! by rejection-sampling 6-bit chunks of a cryptographically seeded generator, as LiveKit's
//! `guid.New` does, so every character is uniform over the alphabet.

use rand::{Rng, SeedableRng, rngs::StdRng};

/// The shortuuid base57 alphabet (no `0`, `1`, `I`, `O`, `l`).
pub const BASE57_ALPHABET: &[u8; 57] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The number of random characters after the prefix.
pub const ID_RANDOM_LEN: usize = 12;

/// Prefix of webhook event ids.
pub const WEBHOOK_EVENT_PREFIX: &str = "EV_";
/// Prefix of analytics event ids.
pub const ANALYTICS_EVENT_PREFIX: &str = "AE_";
/// Prefix of analytics stat ids.
pub const ANALYTICS_STAT_PREFIX: &str = "AS_";

/// Generates ids; one per thread of use, or behind a lock.
#[derive(Debug)]
pub struct IdGenerator {
    rng: StdRng,
}

impl IdGenerator {
    /// Creates a generator seeded from the operating system's random source.
    pub fn from_os() -> Self {
        Self { rng: rand::make_rng() }
    }

    /// Creates a deterministic generator, for tests and simulations.
    pub fn seeded(seed: u64) -> Self {
        Self { rng: StdRng::seed_from_u64(seed) }
    }

    /// Returns `prefix` followed by 12 base57 characters.
    pub fn next_id(&mut self, prefix: &str) -> String {
        let mut id = String::with_capacity(prefix.len() + ID_RANDOM_LEN);
        id.push_str(prefix);
        let mut random = [0u8; ID_RANDOM_LEN];
        self.fill_random(&mut random);
        id.extend(random.iter().map(|&byte| char::from(byte)));
        id
    }

    /// Fills `out` with base57 characters: ten 6-bit chunks per 64-bit draw, chunks of 57 or
    /// more rejected, so each character is uniform over the alphabet.
    fn fill_random(&mut self, out: &mut [u8]) {
        let mut produced = 0;
        while produced < out.len() {
            let mut bits = self.rng.next_u64();
            for _ in 0..10 {
                let chunk = (bits & 0x3f) as usize;
                bits >>= 6;
                if chunk < BASE57_ALPHABET.len() {
                    out[produced] = BASE57_ALPHABET[chunk];
                    produced += 1;
                    if produced == out.len() {
                        break;
                    }
                }
            }
        }
    }
}

/// An id of exactly 3 prefix and 12 random bytes, stored inline: flushes make one per coalesced
/// stat, and a heap allocation each would dominate their cost.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InlineId {
    bytes: [u8; 15],
}

impl InlineId {
    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes).expect("ids are ASCII")
    }
}

impl std::fmt::Debug for InlineId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::fmt::Display for InlineId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl IdGenerator {
    /// Returns an inline id with a 3-byte ASCII `prefix` such as `AS_`.
    ///
    /// # Panics
    ///
    /// Panics if `prefix` is not 3 ASCII bytes (a programming error: prefixes are constants).
    pub fn next_inline(&mut self, prefix: &str) -> InlineId {
        assert!(prefix.len() == 3 && prefix.is_ascii(), "id prefixes are 3 ASCII bytes");
        let mut bytes = [0u8; 15];
        bytes[..3].copy_from_slice(prefix.as_bytes());
        self.fill_random(&mut bytes[3..]);
        InlineId { bytes }
    }
}

/// Returns whether `id` is `prefix` followed by exactly 12 base57 characters.
pub fn is_valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == ID_RANDOM_LEN && rest.bytes().all(|byte| BASE57_ALPHABET.contains(&byte))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_twelve_base57_characters() {
        let mut generator = IdGenerator::seeded(7);
        for prefix in [WEBHOOK_EVENT_PREFIX, ANALYTICS_EVENT_PREFIX, ANALYTICS_STAT_PREFIX] {
            for _ in 0..1000 {
                let id = generator.next_id(prefix);
                assert!(is_valid_id(&id, prefix), "{id}");
            }
        }
    }

    #[test]
    fn every_alphabet_character_is_used_and_ids_do_not_repeat() {
        let mut generator = IdGenerator::from_os();
        let mut seen = std::collections::HashSet::new();
        let mut used = [false; 57];
        for _ in 0..5000 {
            let id = generator.next_id(WEBHOOK_EVENT_PREFIX);
            for byte in id[3..].bytes() {
                let index = BASE57_ALPHABET.iter().position(|&c| c == byte).expect("base57");
                used[index] = true;
            }
            assert!(seen.insert(id));
        }
        assert!(used.iter().all(|&u| u));
    }

    #[test]
    fn invalid_ids_are_recognised() {
        assert!(!is_valid_id("EV_short", "EV_"));
        assert!(!is_valid_id("EV_0123456789ab", "EV_"));
        assert!(!is_valid_id("AE_23456789ABCD", "EV_"));
        assert!(is_valid_id("EV_23456789ABCD", "EV_"));
    }
}
