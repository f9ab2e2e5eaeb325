//! Call quality, computed from the same samples as the honest rates (DESIGN.md, "Call quality"):
//! the issue detectors of every media track and direction ([`detect`]), the attribution of a
//! publisher's upstream trouble to its subscribers ([`board`]), and the E-model MOS estimate of
//! audio ([`mos`]).
//!
//! An issue is opened when its condition held for `quality.open_after` of *sample* time and
//! closed when it did not hold for `quality.close_after`; its `started_at` is the start of the
//! first bad sample and its `ended_at` the start of the first clean one, so the times do not
//! depend on how often a track reports (by more than one sample interval). Detection runs while
//! a sample is folded in, under its worker's lock; the one exception is `no_media` of a published
//! track that sends no samples at all, which the stats flush checks as it visits every track
//! ([`detect::TrackQuality::check_silence`]).

pub(crate) mod board;
pub(crate) mod detect;
pub mod mos;

use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;
use sha2::{Digest, Sha256};

use crate::events::names::ROOM_REPORT;
use crate::ids::{BASE57_ALPHABET, ID_RANDOM_LEN};
use crate::keys::Direction;
use crate::proto as lk;
use crate::time::UnixMillis;
use crate::webhook::RenderedWebhook;

/// The prefix of quality issue ids.
pub const ISSUE_PREFIX: &str = "QI_";

/// The analytics event type name of an issue that opened.
pub const ISSUE_STARTED_EVENT: &str = "QUALITY_ISSUE_STARTED";
/// The analytics event type name of an issue that closed.
pub const ISSUE_ENDED_EVENT: &str = "QUALITY_ISSUE_ENDED";

/// The thresholds and hysteresis of the issue detectors (the `[quality]` config section).
#[derive(Clone, Debug, PartialEq)]
pub struct QualityConfig {
    /// Whether the detectors run at all.
    pub enabled: bool,
    /// A condition opens an issue once it held for this long, in sample time.
    pub open_after: Duration,
    /// An open issue closes once its condition did not hold for this long, in sample time.
    pub close_after: Duration,
    /// `packet_loss`: lost packets over this percentage of the packets expected.
    pub loss_pct: f64,
    /// `jitter`: interarrival jitter over this many milliseconds.
    pub jitter_ms: f64,
    /// `rtt`: round-trip time over this many milliseconds.
    pub rtt_ms: f64,
    /// `low_score`: LiveKit's connection score (0 to 5) under this.
    pub min_score: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            open_after: Duration::from_secs(10),
            close_after: Duration::from_secs(10),
            loss_pct: 5.0,
            jitter_ms: 30.0,
            rtt_ms: 400.0,
            min_score: 3.0,
        }
    }
}

/// What kind of trouble an issue is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// Packet loss over `quality.loss_pct`.
    PacketLoss,
    /// Jitter over `quality.jitter_ms`.
    Jitter,
    /// Round-trip time over `quality.rtt_ms`.
    Rtt,
    /// Connection score under `quality.min_score`.
    LowScore,
    /// A published, unmuted track that sends nothing.
    NoMedia,
}

impl IssueKind {
    /// Every kind, in the order of their detectors.
    pub const ALL: [IssueKind; 5] = [
        IssueKind::PacketLoss,
        IssueKind::Jitter,
        IssueKind::Rtt,
        IssueKind::LowScore,
        IssueKind::NoMedia,
    ];

    /// Returns the API's name (`packet_loss`, `jitter`, `rtt`, `low_score`, `no_media`).
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::PacketLoss => "packet_loss",
            IssueKind::Jitter => "jitter",
            IssueKind::Rtt => "rtt",
            IssueKind::LowScore => "low_score",
            IssueKind::NoMedia => "no_media",
        }
    }

    /// Parses the API's name.
    pub fn parse(name: &str) -> Option<Self> {
        IssueKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The mask of the kinds whose trouble on a publisher's upstream reaches its subscribers:
    /// all but round-trip time, which is one leg's own (a publisher's slow uplink does not
    /// lengthen a subscriber's round trip).
    pub(crate) const PROPAGATING: u8 = 0b1_1011;

    /// The kind's bit in a mask of kinds.
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The issue detectors' state of one open stats worker, as a stats flush leaves it
/// ([`crate::Output::QualityState`]), for the store to keep beside the worker's state: a restart
/// or a cluster take-over puts it back ([`crate::TelemetryService::restore_quality`]), so that a
/// bad run under way at the cut opens its issue with the same start (hence the same id), and a
/// clean run under way closes it at the same time, as without the cut. A flush pushes a worker's
/// state at the worker's first flush (if empty), then only when it changed since the one pushed
/// last: the store holds one for every open worker that lived through a flush, as of its last
/// flush, which is the whole truth about its detectors then (a cluster take-over, which replays
/// every call after that flush, needs no other).
#[derive(Clone, Debug, PartialEq)]
pub struct QualityState {
    /// The room's sid.
    pub room_id: Arc<str>,
    /// The room's name.
    pub room_name: Arc<str>,
    /// The participant's sid.
    pub participant_id: Arc<str>,
    /// When the worker was made: the state is that worker's, not a later one's under the same
    /// key (a rejoin).
    pub created_at: UnixMillis,
    /// The worker's media tracks whose detectors hold anything. Empty: none does (or the worker
    /// closed).
    pub tracks: Vec<TrackQualityState>,
}

/// One media track's detectors ([`QualityState`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackQualityState {
    /// The direction.
    pub direction: Direction,
    /// The track's sid.
    pub track_id: String,
    /// Upstream: muted (`TrackMuted` without a later `TrackUnmuted`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
    /// Upstream, while published: the time its silence counts from (its publication or latest
    /// unmute), for `no_media`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_from: Option<i64>,
    /// The longest interval of its samples in the latest flush that took some (milliseconds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cadence_ms: u32,
    /// The detectors that hold a bad run, an open issue or both, in kind order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detectors: Vec<DetectorState>,
    /// Upstream in trouble: the subscribers listed as affected so far (at most 256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// One detector's hysteresis ([`TrackQualityState`]), in sample time (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DetectorState {
    /// The issue kind.
    pub kind: IssueKind,
    /// The start of the first bad sample of the bad run under way, or of the open issue.
    pub bad_since: i64,
    /// An open issue: the start of the first clean sample of the clean run under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_since: Option<i64>,
    /// The worst value of the run (of the whole issue once open).
    pub worst: f32,
    /// Whether the issue is open (else a bad run is under way, not long enough yet).
    pub open: bool,
}

/// What the detectors share: the thresholds and the upstream board.
#[derive(Debug)]
pub(crate) struct Quality {
    pub(crate) thresholds: detect::Thresholds,
    pub(crate) board: board::UpstreamBoard,
}

impl Quality {
    pub(crate) fn new(config: &QualityConfig) -> Self {
        Self { thresholds: detect::Thresholds::new(config), board: board::UpstreamBoard::default() }
    }
}

/// A quality issue of one track and direction.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityIssue {
    /// `QI_` and 12 base57 characters, derived from the track, direction, kind and start, so the
    /// same issue always has the same id.
    pub id: String,
    /// What kind of trouble.
    pub kind: IssueKind,
    /// Upstream: the publisher's uplink; downstream: the subscriber's own downlink.
    pub direction: Direction,
    /// The room's sid.
    pub room_id: Arc<str>,
    /// The room's name.
    pub room_name: Arc<str>,
    /// The participant whose leg is in trouble: the publisher upstream, the subscriber
    /// downstream.
    pub participant_id: Arc<str>,
    /// That participant's identity.
    pub identity: Arc<str>,
    /// The track.
    pub track_id: CompactString,
    /// The worst value seen (loss in percent, jitter and RTT in milliseconds, the lowest score,
    /// packets for `no_media`).
    pub value: f64,
    /// The threshold it broke.
    pub threshold: f64,
    /// The start of the first sample that broke the threshold.
    pub started_at: UnixMillis,
    /// The start of the first clean sample (or the time its track or participant went away);
    /// `None` while open.
    pub ended_at: Option<UnixMillis>,
    /// Upstream issues: the subscribers whose downstream samples of the track arrived while the
    /// publisher's upstream was in trouble (at most 256).
    pub affected: Vec<String>,
}

impl QualityIssue {
    /// Whether the issue is closed.
    pub fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }

    /// The `issue` object of events, webhooks and the API (DESIGN.md): `{id, kind, direction,
    /// participantSid, trackSid, value, threshold, startedAt, endedAt, affected}`, times in RFC
    /// 3339 (`endedAt` absent while open).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::json!({
            "id": self.id,
            "kind": self.kind.as_str(),
            "direction": self.direction.as_str(),
            "roomSid": &*self.room_id,
            "participantSid": &*self.participant_id,
            "participantIdentity": &*self.identity,
            "trackSid": self.track_id.as_str(),
            "value": round3(self.value),
            "threshold": self.threshold,
            "startedAt": rfc3339(self.started_at),
            "affected": self.affected,
        });
        if let Some(ended_at) = self.ended_at {
            object["endedAt"] = rfc3339(ended_at);
        }
        object
    }
}

/// A time as the protobuf JSON mapping writes a `Timestamp`: RFC 3339, UTC.
fn rfc3339(at: UnixMillis) -> serde_json::Value {
    serde_json::to_value(at.to_timestamp()).unwrap_or(serde_json::Value::Null)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// An issue that opened or closed, as it leaves the core ([`crate::Output::Quality`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QualityChange {
    /// When the core saw the change: the call time of the sample or call that caused it.
    pub at: UnixMillis,
    /// The issue; closed for `QUALITY_ISSUE_ENDED`.
    pub issue: QualityIssue,
}

impl QualityChange {
    /// `QUALITY_ISSUE_STARTED` or `QUALITY_ISSUE_ENDED`.
    pub fn event_type(&self) -> &'static str {
        if self.issue.is_ended() { ISSUE_ENDED_EVENT } else { ISSUE_STARTED_EVENT }
    }

    /// The webhook event name: `quality_degraded` or `quality_recovered`.
    pub fn webhook_name(&self) -> &'static str {
        if self.issue.is_ended() {
            crate::events::names::QUALITY_RECOVERED
        } else {
            crate::events::names::QUALITY_DEGRADED
        }
    }

    /// The analytics event's id (`AE_`), derived from the issue's id and the change, so that a
    /// change applied twice is stored once.
    pub fn event_id(&self) -> String {
        derived_id(crate::ids::ANALYTICS_EVENT_PREFIX, &[&self.issue.id, self.event_type()])
    }

    /// The webhook's id (`EV_`), derived like [`QualityChange::event_id`].
    pub fn webhook_id(&self) -> String {
        derived_id(crate::ids::WEBHOOK_EVENT_PREFIX, &[&self.issue.id, self.webhook_name()])
    }

    /// The analytics event as stored and listed (`GET /v1/rooms/{sid}/events`): `{id, type,
    /// timestamp, roomId, room: {sid, name}, participantId, trackId, issue}` in the protobuf JSON
    /// style of the other events; `timestamp` is when the core saw the change.
    pub fn event_json(&self) -> serde_json::Value {
        let issue = &self.issue;
        serde_json::json!({
            "id": self.event_id(),
            "type": self.event_type(),
            "timestamp": rfc3339(self.at),
            "roomId": &*issue.room_id,
            "room": { "sid": &*issue.room_id, "name": &*issue.room_name },
            "participantId": &*issue.participant_id,
            "trackId": issue.track_id.as_str(),
            "issue": issue.to_json(),
        })
    }

    /// LiveKit's `WebhookEvent` of the change: `room {sid, name}`, `participant {sid,
    /// identity}`, `track {sid}`, its id and time (the `issue` object is added by
    /// [`QualityChange::render_webhook`]).
    pub fn webhook(&self) -> lk::WebhookEvent {
        let issue = &self.issue;
        lk::WebhookEvent {
            id: self.webhook_id(),
            room: Some(lk::Room {
                sid: issue.room_id.to_string(),
                name: issue.room_name.to_string(),
                ..Default::default()
            }),
            participant: Some(lk::ParticipantInfo {
                sid: issue.participant_id.to_string(),
                identity: issue.identity.to_string(),
                ..Default::default()
            }),
            track: Some(lk::TrackInfo { sid: issue.track_id.to_string(), ..Default::default() }),
            ..crate::events::webhook(self.webhook_name(), self.at)
        }
    }

    /// The webhook rendered: LiveKit's `WebhookEvent` JSON with the `issue` object added as its
    /// last field (LiveKit's receivers ignore fields they do not know).
    pub fn render_webhook(&self) -> RenderedWebhook {
        let mut rendered = RenderedWebhook::render(&self.webhook());
        rendered.append_field("issue", &self.issue.to_json());
        rendered
    }
}

/// The `room_report` webhook of a finished room: LiveKit's `WebhookEvent` with `room {sid, name}`
/// and the `report` object added as its last field, created at `at` (the room's end). Its id is
/// derived from the room's sid, so a report made twice (a retried write, two instances) is one
/// message.
pub fn room_report_webhook(
    room_sid: &str,
    room_name: &str,
    at: UnixMillis,
    report: &serde_json::Value,
) -> RenderedWebhook {
    let event = lk::WebhookEvent {
        id: room_report_webhook_id(room_sid),
        room: Some(lk::Room {
            sid: room_sid.to_owned(),
            name: room_name.to_owned(),
            ..Default::default()
        }),
        ..crate::events::webhook(ROOM_REPORT, at)
    };
    let mut rendered = RenderedWebhook::render(&event);
    rendered.append_field("report", report);
    rendered
}

/// The id of room `room_sid`'s `room_report` webhook ([`room_report_webhook`]).
pub fn room_report_webhook_id(room_sid: &str) -> String {
    derived_id("EV_", &[ROOM_REPORT, room_sid])
}

/// `prefix` and 12 base57 characters from the SHA-256 of `parts` (each length-prefixed).
pub(crate) fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = String::with_capacity(prefix.len() + ID_RANDOM_LEN);
    id.push_str(prefix);
    // 12 bytes of the digest, each reduced onto the alphabet (the bias of 256 mod 57 is
    // irrelevant for an id that only needs to be stable and rarely collide).
    id.extend(
        digest[..ID_RANDOM_LEN]
            .iter()
            .map(|&byte| char::from(BASE57_ALPHABET[usize::from(byte) % BASE57_ALPHABET.len()])),
    );
    id
}

#[cfg(test)]
mod tests;
