//! Time as the core sees it: Unix milliseconds, an injectable clock, and conversions to and from
//! protobuf `Timestamp`s.
//!
//! The core never reads the system clock on its own: every call carries the time the SFU made it
//! (`CallMeta::at`), and flushes take the flush time from a [`Clock`] the embedder chooses. Tests
//! use [`ManualClock`] and so never sleep.

use std::sync::atomic::{AtomicI64, Ordering};

use pbjson_types::Timestamp;

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Builds a time from whole seconds since the Unix epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Returns whole seconds since the Unix epoch, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Adds a number of milliseconds.
    #[must_use]
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Returns the milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: UnixMillis) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Converts to a protobuf `Timestamp`.
    pub fn to_timestamp(self) -> Timestamp {
        Timestamp {
            seconds: self.0.div_euclid(1000),
            nanos: (self.0.rem_euclid(1000) * 1_000_000) as i32,
        }
    }

    /// Converts from a protobuf `Timestamp`, truncating to whole milliseconds.
    ///
    /// Returns `None` for a timestamp outside the range that protobuf allows
    /// (years 0001 to 9999, nanos in `0..1_000_000_000`).
    pub fn from_timestamp(timestamp: &Timestamp) -> Option<Self> {
        const MIN_SECONDS: i64 = -62_135_596_800;
        const MAX_SECONDS: i64 = 253_402_300_799;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&timestamp.seconds)
            || !(0..1_000_000_000).contains(&timestamp.nanos)
        {
            return None;
        }
        Some(Self(timestamp.seconds * 1000 + i64::from(timestamp.nanos / 1_000_000)))
    }
}

/// A source of "now" for the parts of the core that act on their own schedule (flush, reap).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Returns the current time.
    fn now(&self) -> UnixMillis;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let since_epoch =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UnixMillis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// Creates a clock showing `start`.
    pub fn new(start: UnixMillis) -> Self {
        Self { millis: AtomicI64::new(start.0) }
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: UnixMillis) {
        self.millis.store(at.0, Ordering::SeqCst);
    }

    /// Moves the clock forward by `millis`.
    pub fn advance_millis(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip_keeps_milliseconds() {
        for millis in [0, 1, 999, 1000, 1_700_000_000_123, -1, -1001] {
            let at = UnixMillis(millis);
            assert_eq!(UnixMillis::from_timestamp(&at.to_timestamp()), Some(at), "{millis}");
        }
    }

    #[test]
    fn out_of_range_timestamps_are_refused() {
        assert_eq!(UnixMillis::from_timestamp(&Timestamp { seconds: 0, nanos: -1 }), None);
        assert_eq!(UnixMillis::from_timestamp(&Timestamp { seconds: i64::MAX, nanos: 0 }), None);
    }
}
