//! A service on a manual clock, and helpers to read what it produced.

use std::sync::Arc;
use std::time::Duration;

use telemetry_core::proto as lk;
use telemetry_core::{
    CallMeta, CoreConfig, ManualClock, Output, OutputReceiver, Sequenced, StatsBatch, StatsKey,
    TelemetryService, UnixMillis,
};

/// 2023-11-14T22:13:20Z.
pub(crate) const T0: UnixMillis = UnixMillis(1_700_000_000_000);

pub(crate) struct Harness {
    pub(crate) service: TelemetryService,
    pub(crate) receiver: OutputReceiver,
    pub(crate) clock: Arc<ManualClock>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(CoreConfig { node_id: "node-a".into(), ..CoreConfig::default() })
    }

    pub(crate) fn with_config(config: CoreConfig) -> Self {
        let clock = Arc::new(ManualClock::new(T0));
        let (service, receiver) =
            TelemetryService::builder(config).clock(clock.clone()).id_seed(42).build();
        Self { service, receiver, clock }
    }

    pub(crate) fn advance(&self, duration: Duration) {
        self.clock.advance_millis(duration.as_millis() as i64);
    }

    pub(crate) fn now(&self) -> UnixMillis {
        self.service.now().at
    }

    pub(crate) fn meta(&self) -> CallMeta {
        self.service.now()
    }

    /// Everything produced since the last call.
    pub(crate) fn outputs(&self) -> Vec<Sequenced> {
        let mut outputs = Vec::new();
        self.receiver.take(usize::MAX, &mut outputs);
        outputs
    }

    /// The analytics events produced since the last call (other outputs are discarded).
    pub(crate) fn events(&self) -> Vec<lk::AnalyticsEvent> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o.output {
                Output::Call(call) => call.event.map(|event| event.decode()),
                _ => None,
            })
            .collect()
    }

    /// The webhooks and events, paired per call, since the last call.
    pub(crate) fn calls(&self) -> Vec<(Option<lk::WebhookEvent>, Option<lk::AnalyticsEvent>)> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o.output {
                Output::Call(call) => Some((
                    call.webhook.map(|webhook| webhook.decode()),
                    call.event.map(|event| event.decode()),
                )),
                _ => None,
            })
            .collect()
    }

    /// Flushes now and returns the stats batches (other outputs are discarded).
    pub(crate) fn flush(&self) -> Vec<StatsBatch> {
        self.service.flush_stats();
        self.stats_batches()
    }

    pub(crate) fn stats_batches(&self) -> Vec<StatsBatch> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o.output {
                Output::Stats(batch) => Some(batch),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn track_stats(&self, room_id: &str, key: &StatsKey, stat: lk::AnalyticsStat) {
        self.service.track_stats(room_id, "RoomName", key, &stat).expect("sample accepted");
    }
}

pub(crate) fn room() -> lk::Room {
    lk::Room {
        sid: "RoomSid".into(),
        name: "RoomName".into(),
        creation_time: T0.as_secs() - 60,
        num_participants: 2,
        ..Default::default()
    }
}

pub(crate) fn participant(sid: &str) -> lk::ParticipantInfo {
    lk::ParticipantInfo {
        sid: sid.into(),
        identity: format!("{sid}-identity"),
        state: lk::participant_info::State::Active as i32,
        ..Default::default()
    }
}

pub(crate) fn video_track(sid: &str) -> lk::TrackInfo {
    lk::TrackInfo {
        sid: sid.into(),
        r#type: lk::TrackType::Video as i32,
        source: lk::TrackSource::Camera as i32,
        mime_type: "video/VP8".into(),
        width: 1280,
        height: 720,
        ..Default::default()
    }
}

/// A sample with one stream of `bytes` and `packets`.
pub(crate) fn stat(bytes: u64, packets: u32) -> lk::AnalyticsStat {
    stat_with(lk::AnalyticsStream {
        primary_bytes: bytes,
        primary_packets: packets,
        ..Default::default()
    })
}

pub(crate) fn stat_with(stream: lk::AnalyticsStream) -> lk::AnalyticsStat {
    lk::AnalyticsStat { streams: vec![stream], ..Default::default() }
}

/// A stream covering `[start, end)` with `bytes`.
pub(crate) fn timed_stream(
    start: UnixMillis,
    end: UnixMillis,
    bytes: u64,
    packets: u32,
) -> lk::AnalyticsStream {
    lk::AnalyticsStream {
        primary_bytes: bytes,
        primary_packets: packets,
        start_time: Some(start.to_timestamp()),
        end_time: Some(end.to_timestamp()),
        ..Default::default()
    }
}

pub(crate) fn join(harness: &Harness, room: &lk::Room, participant: &lk::ParticipantInfo) {
    harness.service.participant_joined(
        room.clone(),
        participant.clone(),
        None,
        None,
        true,
        telemetry_core::DEFAULT_GUARD,
    );
}
