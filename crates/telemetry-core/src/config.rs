//! The core's settings: flush cadence, reap delay and the overload policy.

use std::time::Duration;

/// Settings of a [`crate::TelemetryService`].
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The node that in-process calls are attributed to (the embedding SFU's node id).
    pub node_id: String,
    /// How often stats workers are flushed; LiveKit's `telemetryStatsUpdateInterval` (30 s).
    ///
    /// It also bounds how far back the first timestamp-less sample of a track may reach.
    pub flush_interval: Duration,
    /// How long a closed stats worker keeps collecting late samples before a flush reaps it;
    /// LiveKit's `workerCleanupWait` (3 min).
    pub worker_cleanup_wait: Duration,
    /// Above this many undelivered outputs (the sinks have fallen behind) new stats samples are
    /// shed. Lifecycle calls are never shed, so under a stalled consumer the queue still grows by
    /// their outputs (about 14 KB each: prost messages are large).
    pub max_pending_outputs: usize,
    /// Samples of one track and direction accepted between two flushes; later ones are shed.
    /// Protects memory against a runaway reporter: a well-behaved one sends 6 to 30.
    pub max_samples_per_track: u32,
    /// Sends the full `Room` in `track_published` and `track_unpublished` webhooks instead of
    /// `{sid, name}` (LiveKit's `enable_full_room_in_webhooks`).
    pub full_room_in_track_webhooks: bool,
    /// Written into the `analytics_key` of every analytics event and stat (empty in LiveKit's open
    /// source server).
    pub analytics_key: String,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            node_id: "local".to_owned(),
            flush_interval: Duration::from_secs(30),
            worker_cleanup_wait: Duration::from_secs(180),
            max_pending_outputs: 100_000,
            max_samples_per_track: 4096,
            full_room_in_track_webhooks: false,
            analytics_key: String::new(),
        }
    }
}

impl CoreConfig {
    pub(crate) fn flush_interval_millis(&self) -> i64 {
        duration_millis(self.flush_interval)
    }

    pub(crate) fn cleanup_wait_millis(&self) -> i64 {
        duration_millis(self.worker_cleanup_wait)
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
