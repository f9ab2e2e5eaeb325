//! The core's settings: flush cadence, reap delay, the overload policy and the bounds on what
//! callers' ids can make the core hold.

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
    /// their outputs (a few hundred bytes each: events and webhooks wait encoded).
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
    /// Bounds on what callers' ids can make the core hold.
    pub limits: CoreLimits,
    /// The call quality detectors (DESIGN.md, "Call quality").
    pub quality: crate::quality::QualityConfig,
}

/// Bounds on the state that callers' ids create: every table keyed by a caller-chosen string has
/// a cap on live entries and forgets idle ones, and a refusal is counted
/// (`rtc_telemetry_limit_refusals_total`), never silent. Defaults are far above what a real SFU
/// fleet reaches and keep the core within a few hundred megabytes whatever callers send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreLimits {
    /// Nodes that made a call within `node_idle_timeout`. A call from a new node beyond this is
    /// refused (it names the limit).
    pub max_nodes: usize,
    /// A node without calls for this long is forgotten, with its rate cells, Prometheus series,
    /// lifecycle gauges and open rooms (as if it had stopped exporting metrics).
    pub node_idle_timeout: Duration,
    /// Stats workers (participants in rooms). A join beyond this still stores its event and
    /// webhook, but gets no worker: its samples count as `without_worker`.
    pub max_participants: usize,
    /// Tracks (per direction) one participant's worker keeps. A sample for a new track beyond
    /// this is shed.
    pub max_tracks_per_participant: usize,
    /// A stats worker that got no sample and no lifecycle call for this long is closed (and
    /// reaped after `worker_cleanup_wait`), and a track without samples for this long is
    /// dropped from its worker: the leak of a lost `ParticipantLeft` is bounded.
    pub participant_idle_timeout: Duration,
    /// Rooms started and not ended, tracked for `livekit_room_total` and room durations. Rooms
    /// beyond this are not tracked in those metrics (their events and webhooks are unaffected).
    pub max_open_rooms: usize,
}

impl Default for CoreLimits {
    fn default() -> Self {
        Self {
            max_nodes: 1000,
            node_idle_timeout: Duration::from_secs(3600),
            max_participants: 500_000,
            max_tracks_per_participant: 1024,
            participant_idle_timeout: Duration::from_secs(2 * 3600),
            max_open_rooms: 200_000,
        }
    }
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
            limits: CoreLimits::default(),
            quality: crate::quality::QualityConfig::default(),
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

    pub(crate) fn node_idle_millis(&self) -> i64 {
        duration_millis(self.limits.node_idle_timeout)
    }

    pub(crate) fn participant_idle_millis(&self) -> i64 {
        duration_millis(self.limits.participant_idle_timeout)
    }
}

fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
