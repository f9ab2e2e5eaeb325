//! The adapter's settings: the room idle timeout of DESIGN.md, the expiry of sessions that vanish
//! without `destroyed`, and the caps on the state one Janus server's events can make.

use std::time::Duration;

/// How the adapter maps and bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// A VideoRoom room is finished once its last participant has been gone this long
    /// (`janus.room_idle_timeout`).
    pub room_idle_timeout: Duration,
    /// A Janus session without an event for this long is taken as gone, as if `destroyed` had
    /// arrived at its last event (`janus.session_idle_timeout`). A session with a PeerConnection
    /// reports every `stats_period` and repeats ICE states several times a second.
    pub session_idle_timeout: Duration,
    /// Caps on the state.
    pub limits: AdapterLimits,
}

impl Default for AdapterConfig {
    /// The defaults of the service's `config/default.toml`.
    fn default() -> Self {
        Self {
            room_idle_timeout: Duration::from_secs(30),
            session_idle_timeout: Duration::from_secs(300),
            limits: AdapterLimits::default(),
        }
    }
}

/// Caps on the state kept for Janus servers. An event that would go beyond one is rejected,
/// naming the cap, and counted ([`crate::Counters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterLimits {
    /// Janus servers (`emitter`s) with state (`janus.max_emitters`).
    pub max_emitters: usize,
    /// Sessions of one Janus server (`janus.max_sessions`).
    pub max_sessions: usize,
    /// Handles of one session (`janus.max_handles_per_session`).
    pub max_handles_per_session: usize,
    /// Rooms of one Janus server (`janus.max_rooms`).
    pub max_rooms: usize,
    /// Streams of one handle: a publisher's tracks, a subscriber's streams
    /// (`janus.max_streams_per_handle`).
    pub max_streams_per_handle: usize,
}

impl Default for AdapterLimits {
    fn default() -> Self {
        Self {
            max_emitters: 100,
            max_sessions: 20_000,
            max_handles_per_session: 64,
            max_rooms: 10_000,
            max_streams_per_handle: 256,
        }
    }
}

impl AdapterConfig {
    pub(crate) fn room_idle_micros(&self) -> u64 {
        micros(self.room_idle_timeout)
    }

    pub(crate) fn session_idle_micros(&self) -> u64 {
        micros(self.session_idle_timeout)
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
