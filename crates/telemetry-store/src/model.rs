//! What the store holds and how it is asked: records built from the core's outputs (and from
//! LiveKit's `AnalyticsRecorderService` streams), the projection of analytics events onto rooms,
//! participants and tracks, and the queries of the API. Shared by every backend, so a backend only
//! maps these to its own SQL.

use telemetry_core::proto as lk;
use telemetry_core::rates::RateCell;
use telemetry_core::{
    CoalescedStat, Direction, RenderedWebhook, StatsBatch, StreamKind, UnixMillis, WebhookSubject,
};

/// An analytics event, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// What makes the event one: a key written twice is stored once (the second write, and its
    /// projections, are ignored). By default the id, for ids that name the same event whenever
    /// it is made again (derived from an origin or an issue, or received from a LiveKit
    /// recorder); see [`EventRecord::drawn_key`] and [`EventRecord::origin_key`] for the keys
    /// that also keep the store's index of keys appended to rather than written at random.
    pub key: String,
    /// `AE_` id, as the event's payload holds it.
    pub id: String,
    /// The `AnalyticsEventType` name (`PARTICIPANT_JOINED`, ...).
    pub event_type: String,
    /// The event's timestamp.
    pub at: UnixMillis,
    /// The room's sid, when the event has one.
    pub room_sid: String,
    /// The room's name, when the event has one.
    pub room_name: String,
    /// The participant's sid, when the event has one.
    pub participant_sid: String,
    /// The participant's identity, when the event has one.
    pub participant_identity: String,
    /// The track's sid, when the event has one.
    pub track_sid: String,
    /// The node that reported it.
    pub node_id: String,
    /// The whole event in the protobuf JSON mapping.
    pub payload: String,
    /// What the event changes in the rooms, participants and tracks tables.
    pub projections: Vec<Projection>,
}

/// A change to the rooms, participants and tracks tables that an event implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// A room was seen: inserted with `started_at = at` if new; its name filled in if empty.
    RoomSeen { sid: String, name: String, at: UnixMillis },
    /// A room ended.
    RoomEnded { sid: String, at: UnixMillis },
    /// A participant joined (signalling); a participant already further along keeps its state.
    /// Times merge to the earliest known (events may arrive out of order): `joined_at`,
    /// `active_at` and a track's `published_at` keep the earliest value written.
    ParticipantJoined { room_sid: String, sid: String, identity: String, at: UnixMillis },
    /// A participant became active (media connected), or resumed.
    ParticipantActive { room_sid: String, sid: String, identity: String, at: UnixMillis },
    /// A participant left (`aborted`: without ever becoming active).
    ParticipantLeft {
        room_sid: String,
        sid: String,
        identity: String,
        at: UnixMillis,
        aborted: bool,
    },
    /// A track was published.
    TrackPublished {
        room_sid: String,
        sid: String,
        participant_sid: String,
        kind: String,
        source: String,
        mime_type: String,
        at: UnixMillis,
    },
    /// A track was unpublished.
    TrackUnpublished { room_sid: String, sid: String, participant_sid: String, at: UnixMillis },
}

/// A participant's state, as the query API names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParticipantState {
    /// Signalling connected.
    Joined,
    /// Media connected.
    Active,
    /// Left after being active.
    Left,
    /// Left without ever becoming active.
    Aborted,
}

impl ParticipantState {
    /// Every state.
    pub const ALL: [ParticipantState; 4] = [Self::Joined, Self::Active, Self::Left, Self::Aborted];

    /// The query API's name (`joined`, `active`, `left`, `aborted`), also the stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Active => "active",
            Self::Left => "left",
            Self::Aborted => "aborted",
        }
    }

    /// Parses [`ParticipantState::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    /// Whether the participant is still in its room.
    pub fn is_present(self) -> bool {
        matches!(self, Self::Joined | Self::Active)
    }
}

impl EventRecord {
    /// The key of an event whose id its maker drew at random: the maker's `boot` token (a
    /// random number drawn when it started: one per core and its pipeline) and the sequence
    /// number of the core's output that carried the event. Unique by construction, where n
    /// random 71-bit ids collide with a probability of about n²/2^71 (0.4 for the 30 billion
    /// events of a year at 1,000 a second), and a collision under the id would drop an event
    /// silently; a retried write keeps it, so the retry stores nothing twice; and the keys of
    /// one maker increase, so each lands beside the previous one in the store's index of keys
    /// instead of on a page of its own (about 10 % of the SQLite ingest benchmark's time,
    /// BENCHMARKS.md). Also the key of a received event that has no id to be known by (a
    /// message's random token and the event's index in it).
    pub fn drawn_key(boot: u64, sequence: u64) -> String {
        format!("r{boot:016x}{sequence:016x}")
    }

    /// The key of an event of a call applied with an [`telemetry_core::Origin`] (its id derived
    /// from it): the same whoever applies the call again, increasing with the log's sequence.
    pub fn origin_key(origin: telemetry_core::Origin) -> String {
        format!("o{:016x}{:08x}", origin.sequence, origin.index)
    }

    /// The record of a quality issue's `QUALITY_ISSUE_STARTED` or `QUALITY_ISSUE_ENDED` event;
    /// it projects nothing.
    pub fn from_quality(change: &telemetry_core::quality::QualityChange) -> Self {
        let issue = &change.issue;
        let id = change.event_id();
        Self {
            key: id.clone(),
            id,
            event_type: change.event_type().to_owned(),
            at: change.at,
            room_sid: issue.room_id.to_string(),
            room_name: issue.room_name.to_string(),
            participant_sid: issue.participant_id.to_string(),
            participant_identity: issue.identity.to_string(),
            track_sid: issue.track_id.to_string(),
            node_id: String::new(),
            payload: change.event_json().to_string(),
            projections: Vec::new(),
        }
    }

    /// Builds the record of an analytics event, with its projections.
    ///
    /// # Panics
    ///
    /// If the event cannot be written in the protobuf JSON mapping (an enum number this build
    /// does not know, a timestamp out of range): ingest refuses such input before it gets here.
    pub fn from_event(event: &lk::AnalyticsEvent) -> Self {
        let event_type = lk::AnalyticsEventType::try_from(event.r#type)
            .map(|t| t.as_str_name().to_owned())
            .unwrap_or_else(|_| event.r#type.to_string());
        let at = event.timestamp.as_ref().and_then(UnixMillis::from_timestamp).unwrap_or_default();
        // A WEBHOOK event names its room, participant and track only inside its webhook info.
        let webhook = event.webhook.as_ref();
        let room_sid = first_non_empty(&[
            &event.room_id,
            event.room.as_ref().map_or("", |room| &room.sid),
            webhook.map_or("", |info| &info.room_id),
        ]);
        let room_name = first_non_empty(&[
            event.room.as_ref().map_or("", |room| &room.name),
            webhook.map_or("", |info| &info.room_name),
        ]);
        let participant_sid = first_non_empty(&[
            &event.participant_id,
            event.participant.as_ref().map_or("", |p| &p.sid),
            webhook.map_or("", |info| &info.participant_id),
        ]);
        let participant_identity = first_non_empty(&[
            event.participant.as_ref().map_or("", |p| &p.identity),
            webhook.map_or("", |info| &info.participant_identity),
        ]);
        let track_sid = first_non_empty(&[
            &event.track_id,
            event.track.as_ref().map_or("", |track| &track.sid),
            webhook.map_or("", |info| &info.track_id),
        ]);
        let projections = project(
            event,
            at,
            &room_sid,
            &room_name,
            &participant_sid,
            &participant_identity,
            &track_sid,
        );
        Self {
            key: event.id.clone(),
            id: event.id.clone(),
            event_type,
            at,
            room_sid,
            room_name,
            participant_sid,
            participant_identity,
            track_sid,
            node_id: event.node_id.clone(),
            payload: serde_json::to_string(event).expect("protobuf messages serialize to JSON"),
            projections,
        }
    }
}

fn first_non_empty(candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|candidate| !candidate.is_empty())
        .copied()
        .unwrap_or_default()
        .to_owned()
}

fn project(
    event: &lk::AnalyticsEvent,
    at: UnixMillis,
    room_sid: &str,
    room_name: &str,
    participant_sid: &str,
    identity: &str,
    track_sid: &str,
) -> Vec<Projection> {
    use lk::AnalyticsEventType as Type;
    let mut projections = Vec::new();
    if room_sid.is_empty() {
        return projections;
    }
    projections.push(Projection::RoomSeen {
        sid: room_sid.to_owned(),
        name: room_name.to_owned(),
        at,
    });
    let participant = || (room_sid.to_owned(), participant_sid.to_owned(), identity.to_owned());
    match Type::try_from(event.r#type) {
        Ok(Type::RoomEnded) => {
            projections.push(Projection::RoomEnded { sid: room_sid.to_owned(), at })
        }
        Ok(Type::ParticipantJoined) if !participant_sid.is_empty() => {
            let (room_sid, sid, identity) = participant();
            projections.push(Projection::ParticipantJoined { room_sid, sid, identity, at });
        }
        Ok(Type::ParticipantActive | Type::ParticipantResumed) if !participant_sid.is_empty() => {
            let (room_sid, sid, identity) = participant();
            projections.push(Projection::ParticipantActive { room_sid, sid, identity, at });
        }
        Ok(kind @ (Type::ParticipantLeft | Type::ParticipantConnectionAborted))
            if !participant_sid.is_empty() =>
        {
            let (room_sid, sid, identity) = participant();
            let aborted = kind == Type::ParticipantConnectionAborted;
            projections.push(Projection::ParticipantLeft { room_sid, sid, identity, at, aborted });
        }
        Ok(Type::TrackPublished) if !track_sid.is_empty() => {
            let track = event.track.clone().unwrap_or_default();
            projections.push(Projection::TrackPublished {
                room_sid: room_sid.to_owned(),
                sid: track_sid.to_owned(),
                participant_sid: participant_sid.to_owned(),
                kind: enum_name(
                    lk::TrackType::try_from(track.r#type).map(|t| t.as_str_name()),
                    track.r#type,
                ),
                source: enum_name(
                    lk::TrackSource::try_from(track.source).map(|s| s.as_str_name()),
                    track.source,
                ),
                mime_type: track.mime_type,
                at,
            });
        }
        Ok(Type::TrackUnpublished) if !track_sid.is_empty() => {
            projections.push(Projection::TrackUnpublished {
                room_sid: room_sid.to_owned(),
                sid: track_sid.to_owned(),
                participant_sid: participant_sid.to_owned(),
                at,
            })
        }
        _ => {}
    }
    projections
}

fn enum_name<E>(name: Result<&'static str, E>, number: i32) -> String {
    name.map(str::to_owned).unwrap_or_else(|_| number.to_string())
}

/// One coalesced stats window of one track and direction, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsWindowRecord {
    /// `AS_` id; unique.
    pub id: String,
    /// The room's sid.
    pub room_sid: String,
    /// The room's name.
    pub room_name: String,
    /// The participant whose worker produced it (the subscriber, for downstream media).
    pub participant_sid: String,
    /// That participant's identity, when known.
    pub participant_identity: String,
    /// The track.
    pub track_sid: String,
    /// Upstream or downstream.
    pub direction: Direction,
    /// Media, data or signal.
    pub kind: StreamKind,
    /// The codec.
    pub mime: String,
    /// The reporting node.
    pub node_id: String,
    /// Start of the window.
    pub start: UnixMillis,
    /// End of the window.
    pub end: UnixMillis,
    /// When it was flushed.
    pub flushed_at: UnixMillis,
    /// Milliseconds covered by samples.
    pub covered_ms: i64,
    /// Bytes on the wire (primary, retransmitted and padding).
    pub bytes: u64,
    /// Packets on the wire.
    pub packets: u64,
    /// Packets lost.
    pub packets_lost: u64,
    /// Average bit rate over the covered time.
    pub avg_bps: f64,
    /// Peak bit rate at `resolution_ms`.
    pub peak_bps: f64,
    /// The resolution of `peak_bps`.
    pub resolution_ms: i64,
    /// Maximum jitter.
    pub jitter_max: u32,
    /// Maximum RTT.
    pub rtt_max: u32,
    /// Mean score.
    pub score: f32,
    /// Minimum score.
    pub min_score: f32,
    /// Median score.
    pub median_score: f32,
    /// NACKs.
    pub nacks: u64,
    /// PLIs.
    pub plis: u64,
    /// FIRs.
    pub firs: u64,
    /// Frames.
    pub frames: u64,
    /// Samples folded in (invalid ones included).
    pub samples: u32,
    /// Invalid samples skipped.
    pub invalid_samples: u32,
    /// Audio: the E-model MOS estimate of the window (`telemetry_core::coalesce::window_mos`).
    pub mos: Option<f64>,
}

impl StatsWindowRecord {
    /// Builds the records of one flushed batch.
    pub fn from_batch(batch: &StatsBatch) -> Vec<Self> {
        batch.stats.iter().map(|stat| Self::from_coalesced(batch, stat)).collect()
    }

    fn from_coalesced(batch: &StatsBatch, stat: &CoalescedStat) -> Self {
        let coalesced = &stat.coalesced;
        let window = coalesced.window.unwrap_or(telemetry_core::RateWindow {
            start: batch.flushed_at,
            end: batch.flushed_at,
            covered_ms: 0,
            avg_bps: 0.0,
            peak_bps: 0.0,
            resolution_ms: 0,
        });
        Self {
            id: stat.id.to_string(),
            room_sid: batch.room_id.to_string(),
            room_name: batch.room_name.to_string(),
            participant_sid: batch.participant_id.to_string(),
            participant_identity: batch.identity.to_string(),
            track_sid: stat.track_id.to_string(),
            direction: stat.direction,
            kind: stat.kind,
            mime: coalesced.mime.to_string(),
            node_id: stat.node.to_string(),
            start: window.start,
            end: window.end,
            flushed_at: batch.flushed_at,
            covered_ms: window.covered_ms,
            bytes: coalesced.totals.wire_bytes(),
            packets: coalesced.totals.wire_packets(),
            packets_lost: coalesced.totals.packets_lost,
            avg_bps: window.avg_bps,
            peak_bps: window.peak_bps,
            resolution_ms: window.resolution_ms,
            jitter_max: coalesced.jitter_max,
            rtt_max: coalesced.rtt_max,
            score: coalesced.score,
            min_score: coalesced.min_score,
            median_score: coalesced.median_score,
            nacks: coalesced.totals.nacks,
            plis: coalesced.totals.plis,
            firs: coalesced.totals.firs,
            frames: coalesced.totals.frames,
            samples: coalesced.samples,
            invalid_samples: coalesced.invalid_samples,
            mos: coalesced.mos,
        }
    }

    /// Builds the record of a stat a LiveKit node coalesced itself (its `AnalyticsRecorderService`
    /// stream). Its window is its stream's start and end, and without per-sample data its peak
    /// rate is its average, at the resolution of the whole window.
    pub fn from_livekit_stat(stat: &lk::AnalyticsStat, received_at: UnixMillis) -> Self {
        let mut totals = telemetry_core::StreamTotals::default();
        let (mut start, mut end) = (None::<UnixMillis>, None::<UnixMillis>);
        let (mut rtt, mut jitter) = (0, 0);
        for stream in &stat.streams {
            totals.add_stream(stream);
            rtt = rtt.max(stream.rtt);
            jitter = jitter.max(stream.jitter);
            if let Some(s) = stream.start_time.as_ref().and_then(UnixMillis::from_timestamp) {
                start = Some(start.map_or(s, |current| current.min(s)));
            }
            if let Some(e) = stream.end_time.as_ref().and_then(UnixMillis::from_timestamp) {
                end = Some(end.map_or(e, |current| current.max(e)));
            }
        }
        let flushed_at =
            stat.time_stamp.as_ref().and_then(UnixMillis::from_timestamp).unwrap_or(received_at);
        let end = end.unwrap_or(flushed_at);
        let start = start.filter(|start| start.0 > 0 && *start <= end).unwrap_or(end);
        let covered_ms = end.millis_since(start);
        let bytes = totals.wire_bytes();
        let avg_bps = if covered_ms > 0 { bytes as f64 * 8000.0 / covered_ms as f64 } else { 0.0 };
        let kind = if stat.track_id.starts_with(telemetry_core::keys::SIGNAL_TRACK_PREFIX) {
            StreamKind::Signal
        } else if stat.track_id.starts_with(telemetry_core::keys::DATA_CHANNEL_TRACK_PREFIX) {
            StreamKind::Data
        } else {
            StreamKind::Media
        };
        let direction = telemetry_core::Direction::from_stream_type(stat.kind).unwrap_or_default();
        Self {
            id: stat.id.clone(),
            room_sid: stat.room_id.clone(),
            room_name: stat.room_name.clone(),
            participant_sid: stat.participant_id.clone(),
            participant_identity: String::new(),
            track_sid: stat.track_id.clone(),
            direction,
            kind,
            mime: stat.mime.clone(),
            node_id: stat.node.clone(),
            start,
            end,
            flushed_at,
            covered_ms,
            bytes,
            packets: totals.wire_packets(),
            packets_lost: totals.packets_lost,
            avg_bps,
            peak_bps: avg_bps,
            resolution_ms: covered_ms,
            jitter_max: jitter,
            rtt_max: rtt,
            score: stat.score,
            min_score: stat.min_score,
            median_score: stat.median_score,
            nacks: totals.nacks,
            plis: totals.plis,
            firs: totals.firs,
            frames: totals.frames,
            samples: 1,
            invalid_samples: 0,
            mos: if kind == StreamKind::Media {
                telemetry_core::coalesce::window_mos(&stat.mime, &totals, jitter, rtt)
            } else {
                None
            },
        }
    }
}

/// A node's room states, as stored (only the latest per node is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRoomsRecord {
    /// The node.
    pub node_id: String,
    /// Its sequence number.
    pub sequence: u64,
    /// Its timestamp.
    pub at: UnixMillis,
    /// The whole `AnalyticsNodeRooms` in the protobuf JSON mapping.
    pub payload: String,
}

impl NodeRoomsRecord {
    /// Builds the record of a node's room states.
    ///
    /// # Panics
    ///
    /// If the message cannot be written in the protobuf JSON mapping (an enum number this build
    /// does not know, a timestamp out of range): ingest refuses such input before it gets here.
    pub fn from_node_rooms(rooms: &lk::AnalyticsNodeRooms, received_at: UnixMillis) -> Self {
        Self {
            node_id: rooms.node_id.clone(),
            sequence: rooms.sequence_number,
            at: rooms
                .timestamp
                .as_ref()
                .and_then(UnixMillis::from_timestamp)
                .unwrap_or(received_at),
            payload: serde_json::to_string(rooms).expect("protobuf messages serialize to JSON"),
        }
    }
}

/// A room started and not ended, as stored ([`crate::AnalyticsStore::open_rooms`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRoomRecord {
    /// The room's sid.
    pub sid: String,
    /// Its name.
    pub name: String,
    /// The node of its `ROOM_CREATED` event.
    pub node_id: String,
    /// Its start, as projected ([`Projection::RoomStarted`]).
    pub started_at: UnixMillis,
}

impl OpenRoomRecord {
    /// The room, as the core restores it.
    pub fn to_restored(&self) -> telemetry_core::RestoredRoom {
        telemetry_core::RestoredRoom {
            sid: self.sid.clone(),
            name: self.name.clone(),
            node: self.node_id.clone(),
            started_at: self.started_at,
        }
    }
}

/// Bytes and packets of one node in one second, to add to what is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RateCellRecord {
    /// The node.
    pub node_id: String,
    /// Seconds since the epoch.
    pub second: i64,
    /// The amounts.
    pub cell: RateCell,
}

/// Everything one write stores, atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteBatch {
    /// Analytics events, in call order.
    pub events: Vec<EventRecord>,
    /// Coalesced stats windows.
    pub stats: Vec<StatsWindowRecord>,
    /// Node room states.
    pub node_rooms: Vec<NodeRoomsRecord>,
    /// Node rate cells, added to the stored ones.
    pub rate_cells: Vec<RateCellRecord>,
    /// Webhooks for the outbox: a message and its deliveries each.
    pub webhooks: Vec<OutgoingWebhook>,
    /// Stats workers' states, in order: the last state of a worker wins; an open or closed one is
    /// kept (replacing what was kept), a reaped one removes what was kept.
    pub workers: Vec<WorkerRecord>,
    /// Quality issues, in order: see [`IssueRecord`] for how they merge.
    pub issues: Vec<IssueRecord>,
    /// Stats workers' quality detector states, in order: the last of a worker wins, and is kept
    /// with the worker's state (after `workers` are applied) if that state is of the same
    /// worker (its `created_at`); see [`QualityRecord`].
    pub quality: Vec<QualityRecord>,
    /// Cluster mode: the batch holds one partition's outputs, written only if `instance` still
    /// holds the partition's lease at its epoch when the write commits; otherwise nothing of it
    /// is written (the receipt says `fenced`). Backends without cluster leases ignore it.
    pub fence: Option<Fence>,
    /// Makes the write idempotent: see [`WriteMark`]. Without one, a write applied twice adds
    /// its rate cells twice (everything else it holds is stored once whatever happens).
    pub mark: Option<WriteMark>,
}

/// Where a write stands in its writer's sequence of writes ([`WriteBatch::mark`]).
///
/// The store keeps each writer's highest number, in the transaction of the write that carries
/// it. A write whose number is at or below its writer's stored one was committed already (a retry
/// of a write whose answer was lost): nothing of it is written again, and the receipt says
/// `repeated`. So a writer numbers its writes in increasing order and sends one at a time; a
/// fenced-out write, or one that fails, stores no mark. Marks not moved since the retention's cutoff are pruned
/// with the rest ([`crate::AnalyticsStore::prune`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteMark {
    /// The writer: unique among the writers of a database, for as long as it writes (a
    /// consumer's random boot token, with the partition and epoch of a fenced write's lease).
    pub writer: String,
    /// The write's number, higher than every earlier write of the writer.
    pub number: u64,
    /// When the write was made (for pruning).
    pub at: UnixMillis,
}

/// What fences a cluster-mode write ([`WriteBatch::fence`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The instance that holds the lease.
    pub instance: String,
    /// The partition and the epoch it is held at.
    pub lease: Lease,
    /// If set, the partition's stored offset becomes this stream sequence (never lower): every
    /// output of the partition's messages up to it is stored once this batch is.
    pub offset: Option<u64>,
}

/// A quality issue, as stored: one row per issue id, written when it opens and completed when it
/// closes. Merge rule (every backend): a closed record replaces what is stored (end, worst value,
/// affected); an open one is stored only if the id is new, so a start applied again (a replay)
/// never reopens a closed issue.
#[derive(Clone, Debug, PartialEq)]
pub struct IssueRecord {
    /// `QI_` id.
    pub id: String,
    /// The room's sid.
    pub room_sid: String,
    /// The room's name.
    pub room_name: String,
    /// The participant whose leg is in trouble.
    pub participant_sid: String,
    /// Its identity.
    pub participant_identity: String,
    /// The track.
    pub track_sid: String,
    /// Upstream (the publisher's uplink) or downstream (a subscriber's downlink).
    pub direction: Direction,
    /// `packet_loss`, `jitter`, `rtt`, `low_score` or `no_media`.
    pub kind: telemetry_core::quality::IssueKind,
    /// The worst value seen.
    pub value: f64,
    /// The threshold it broke.
    pub threshold: f64,
    /// The start of the first bad sample.
    pub started_at: UnixMillis,
    /// The start of the first clean sample; `None` while open.
    pub ended_at: Option<UnixMillis>,
    /// Upstream issues: the subscribers it reached.
    pub affected: Vec<String>,
}

impl IssueRecord {
    /// The record of an issue as a change left the core.
    pub fn from_issue(issue: &telemetry_core::quality::QualityIssue) -> Self {
        Self {
            id: issue.id.clone(),
            room_sid: issue.room_id.to_string(),
            room_name: issue.room_name.to_string(),
            participant_sid: issue.participant_id.to_string(),
            participant_identity: issue.identity.to_string(),
            track_sid: issue.track_id.to_string(),
            direction: issue.direction,
            kind: issue.kind,
            value: issue.value,
            threshold: issue.threshold,
            started_at: issue.started_at,
            ended_at: issue.ended_at,
            affected: issue.affected.clone(),
        }
    }

    /// The `issue` object of the API (DESIGN.md, "Call quality").
    pub fn to_issue(&self) -> telemetry_core::quality::QualityIssue {
        telemetry_core::quality::QualityIssue {
            id: self.id.clone(),
            kind: self.kind,
            direction: self.direction,
            room_id: self.room_sid.as_str().into(),
            room_name: self.room_name.as_str().into(),
            participant_id: self.participant_sid.as_str().into(),
            identity: self.participant_identity.as_str().into(),
            track_id: self.track_sid.as_str().into(),
            value: self.value,
            threshold: self.threshold,
            started_at: self.started_at,
            ended_at: self.ended_at,
            affected: self.affected.clone(),
        }
    }

    /// `affected` as stored: a JSON array of strings.
    pub fn affected_text(&self) -> String {
        string_list_text(&self.affected)
    }

    /// `affected` from its stored text.
    pub fn affected_from_text(text: &str) -> Result<Vec<String>, crate::StoreError> {
        string_list_from_text(text, "issue affected")
    }

    /// The record that decides each issue among `records` (in order), so that a backend writes
    /// each id once: the first closed one if any (a closed issue stays as it closed), else the
    /// first open one.
    pub fn deciding<'a>(
        records: impl IntoIterator<Item = &'a IssueRecord>,
    ) -> Vec<&'a IssueRecord> {
        let mut kept: Vec<&IssueRecord> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for record in records {
            match index.get(record.id.as_str()) {
                Some(&at) if kept[at].ended_at.is_none() && record.ended_at.is_some() => {
                    kept[at] = record
                }
                Some(_) => {}
                None => {
                    index.insert(&record.id, kept.len());
                    kept.push(record);
                }
            }
        }
        kept
    }
}

/// `GET /v1/issues`: issues overlapping `[from, to)`, oldest start first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IssuesQuery {
    /// `Some(true)`: open ones only; `Some(false)`: closed ones only.
    pub open: Option<bool>,
    /// One room's.
    pub room_sid: Option<String>,
    /// One kind's.
    pub kind: Option<telemetry_core::quality::IssueKind>,
    /// Issues that had not ended by then (open ones included).
    pub from: Option<UnixMillis>,
    /// Issues that started before then.
    pub to: Option<UnixMillis>,
    /// At most this many.
    pub limit: u32,
}

/// The state an ingest adapter keeps between requests (the Janus adapter's, one per Janus
/// server), as the store keeps it: what a restarted service gives back to the adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterStateRecord {
    /// The adapter (`janus`).
    pub adapter: String,
    /// Whose state, for the adapter (a Janus server's `emitter`).
    pub key: String,
    /// Increases with every state of the key: a state is kept only over a lower generation, so
    /// writes that overtake each other leave the newest.
    pub generation: i64,
    /// The state, as the adapter wrote it (JSON).
    pub state: String,
    /// When it was written.
    pub updated_at: UnixMillis,
}

/// A stats worker's state as the store keeps it (see `telemetry_core::WorkerState`): what a
/// restarted service needs to carry on the calls in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerRecord {
    /// The room's sid.
    pub room_id: String,
    /// The participant's sid.
    pub participant_id: String,
    /// The room's name.
    pub room_name: String,
    /// The participant's identity.
    pub identity: String,
    /// The node whose call made the worker.
    pub node_id: String,
    /// When the worker was made.
    pub created_at: UnixMillis,
    /// Whether the participant's connection came up.
    pub connected: bool,
    /// Active guards, in the order they were taken.
    pub guards: Vec<String>,
    /// Open or closed: either is kept until the worker is reaped.
    pub open: bool,
    /// When a closed worker was closed (`None` while open): it is kept, closed, until its reap,
    /// `worker_cleanup_wait` later, so that a restart or a take-over restores it closed and its
    /// late samples until then land in windows as they would have.
    pub closed_at: Option<UnixMillis>,
    /// Reaped: the flush that reaped the closed worker wrote it, and its record is removed.
    /// (Closed records never pile up: each is removed by its worker's reap, or, if the worker was
    /// forgotten, by the reap of the worker its next owner restores from it.)
    pub reaped: bool,
}

impl WorkerRecord {
    /// The record of a worker state.
    pub fn from_state(state: &telemetry_core::WorkerState) -> Self {
        Self {
            room_id: state.room_id.to_string(),
            participant_id: state.participant_id.to_string(),
            room_name: state.room_name.to_string(),
            identity: state.identity.to_string(),
            node_id: state.node.to_string(),
            created_at: state.created_at,
            connected: state.connected,
            guards: state.guards.clone(),
            open: state.open,
            closed_at: state.closed_at,
            reaped: state.reaped,
        }
    }

    /// The worker state a service restores.
    pub fn to_state(&self) -> telemetry_core::WorkerState {
        telemetry_core::WorkerState {
            room_id: self.room_id.as_str().into(),
            room_name: self.room_name.as_str().into(),
            participant_id: self.participant_id.as_str().into(),
            identity: self.identity.as_str().into(),
            node: self.node_id.as_str().into(),
            created_at: self.created_at,
            connected: self.connected,
            guards: self.guards.clone(),
            open: self.open,
            closed_at: self.closed_at,
            reaped: self.reaped,
        }
    }

    /// The guards as stored: a JSON array of strings.
    pub fn guards_text(&self) -> String {
        string_list_text(&self.guards)
    }

    /// Guards from their stored text; a text that is not an array of strings is corrupt.
    pub fn guards_from_text(text: &str) -> Result<Vec<String>, crate::StoreError> {
        string_list_from_text(text, "worker guards")
    }

    /// The last record of each worker among `records` (in order), so that a backend applies each
    /// worker once: the ones to keep (open, or closed and not reaped yet), then the reaped ones to
    /// remove.
    pub fn last_states<'a>(
        records: impl IntoIterator<Item = &'a WorkerRecord>,
    ) -> (Vec<&'a WorkerRecord>, Vec<&'a WorkerRecord>) {
        last_per_worker(records, |record| (&record.room_id, &record.participant_id))
            .into_iter()
            .partition(|record| !record.reaped)
    }
}

/// The last of `records` (in order) of each worker, by its (room, participant) `key`, in the
/// order the workers first appear.
fn last_per_worker<'a, T>(
    records: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&'a T) -> (&'a str, &'a str),
) -> Vec<&'a T> {
    let mut last: Vec<&T> = Vec::new();
    let mut index: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    for record in records {
        match index.get(&key(record)) {
            Some(&at) => last[at] = record,
            None => {
                index.insert(key(record), last.len());
                last.push(record);
            }
        }
    }
    last
}

/// A stats worker's quality detector states as the store keeps them
/// (`telemetry_core::quality::QualityState`), with the worker's record: written by the worker's
/// first flush and by the flushes that changed them, kept only while the worker's record is of
/// the same worker (a record replaced by a rejoin's drops it, a reaped one goes with it), and read
/// back at a restart or a take-over (`Store::quality_states`). A worker with an empty state has
/// one (it held nothing at its last flush); a worker without one had no flush yet (or was stored
/// by a version without them). Every backend stores the tracks as the JSON text of
/// [`QualityRecord::tracks_text`].
#[derive(Clone, Debug, PartialEq)]
pub struct QualityRecord {
    /// The room's sid.
    pub room_id: String,
    /// The participant's sid.
    pub participant_id: String,
    /// The room's name.
    pub room_name: String,
    /// When the worker was made: the state is kept only with this worker's record.
    pub created_at: UnixMillis,
    /// The tracks' detectors; empty: the worker holds none.
    pub tracks: Vec<telemetry_core::quality::TrackQualityState>,
}

impl QualityRecord {
    /// The record of a quality state.
    pub fn from_state(state: &telemetry_core::quality::QualityState) -> Self {
        Self {
            room_id: state.room_id.to_string(),
            participant_id: state.participant_id.to_string(),
            room_name: state.room_name.to_string(),
            created_at: state.created_at,
            tracks: state.tracks.clone(),
        }
    }

    /// The quality state a service restores.
    pub fn to_state(&self) -> telemetry_core::quality::QualityState {
        telemetry_core::quality::QualityState {
            room_id: self.room_id.as_str().into(),
            room_name: self.room_name.as_str().into(),
            participant_id: self.participant_id.as_str().into(),
            created_at: self.created_at,
            tracks: self.tracks.clone(),
        }
    }

    /// The tracks as stored: a JSON array (`[]` for none).
    pub fn tracks_text(&self) -> String {
        serde_json::to_string(&self.tracks).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Tracks from their stored text; a text that does not parse is corrupt.
    pub fn tracks_from_text(
        text: &str,
    ) -> Result<Vec<telemetry_core::quality::TrackQualityState>, crate::StoreError> {
        serde_json::from_str(text).map_err(|error| {
            crate::StoreError::Corrupt(format!("stored quality detector state: {error}"))
        })
    }

    /// The last record of each worker (room and participant) among `records`, in order, so that
    /// a backend applies each once.
    pub fn last_states<'a>(
        records: impl IntoIterator<Item = &'a QualityRecord>,
    ) -> Vec<&'a QualityRecord> {
        last_per_worker(records, |record| (&record.room_id, &record.participant_id))
    }
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        // Destructured so that a new field cannot be forgotten here.
        let Self {
            events,
            stats,
            node_rooms,
            rate_cells,
            webhooks,
            workers,
            issues,
            quality,
            fence,
            mark,
        } = self;
        mark.is_none()
            && fence.as_ref().is_none_or(|fence| fence.offset.is_none())
            && issues.is_empty()
            && quality.is_empty()
            && events.is_empty()
            && stats.is_empty()
            && node_rooms.is_empty()
            && rate_cells.is_empty()
            && webhooks.is_empty()
            && workers.is_empty()
    }

    /// Appends another batch (of the same fence, if either has one: the other's offset, the
    /// later one, wins).
    pub fn append(&mut self, other: &mut WriteBatch) {
        let Self {
            events,
            stats,
            node_rooms,
            rate_cells,
            webhooks,
            workers,
            issues,
            quality,
            fence,
            mark,
        } = other;
        // One write that stands for both: the later mark.
        if let Some(mark) = mark.take() {
            if let Some(mine) = &self.mark {
                debug_assert_eq!(mine.writer, mark.writer, "batches of different writers appended");
            }
            if self.mark.as_ref().is_none_or(|mine| mine.number < mark.number) {
                self.mark = Some(mark);
            }
        }
        if let Some(mut fence) = fence.take() {
            if let Some(mine) = &self.fence {
                debug_assert_eq!(mine.lease, fence.lease, "batches of different fences appended");
                fence.offset = fence.offset.max(mine.offset);
            }
            self.fence = Some(fence);
        }
        self.issues.append(issues);
        self.events.append(events);
        self.stats.append(stats);
        self.node_rooms.append(node_rooms);
        self.rate_cells.append(rate_cells);
        self.webhooks.append(webhooks);
        self.workers.append(workers);
        self.quality.append(quality);
    }
}

/// A page of results and where the next page starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T, C> {
    /// The results.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// The page of `items`, read with a limit of `limit + 1` (one more than asked): if the extra
    /// item came, it is dropped and the cursor is the last item kept; otherwise this is the last
    /// page.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, cursor: impl FnOnce(&T) -> C) -> Self {
        let limit = limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(cursor)
        } else {
            None
        };
        Self { items, next }
    }
}

/// The stored form of a counter: databases keep signed 64-bit integers, so a count above
/// `i64::MAX` is stored as `i64::MAX` (saturated, never wrapped to a negative number).
pub fn stored_count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A counter read back: a negative stored value (never written by this store) reads as 0.
pub fn count_from_stored(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Which rooms to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoomsQuery {
    /// Only open rooms (`Some(true)`), only ended ones (`Some(false)`), or all.
    pub active: Option<bool>,
    /// Only rooms whose name contains this text.
    pub name_contains: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Start after this room.
    pub after: Option<RoomCursor>,
}

/// Where a page of rooms starts: rooms are listed newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomCursor {
    /// Start time of the last room of the previous page.
    pub started_at: UnixMillis,
    /// Its sid.
    pub sid: String,
}

/// A room in a list.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomSummary {
    /// Sid.
    pub sid: String,
    /// Name.
    pub name: String,
    /// When it started (its `room_started`, or the first event seen of it).
    pub started_at: UnixMillis,
    /// When it ended, if it did.
    pub ended_at: Option<UnixMillis>,
    /// Participants who joined it.
    pub num_participants: u64,
    /// Tracks published in it.
    pub num_tracks: u64,
}

/// A participant of a room.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticipantRow {
    /// Sid.
    pub sid: String,
    /// Identity.
    pub identity: String,
    /// When it joined.
    pub joined_at: Option<UnixMillis>,
    /// When it became active.
    pub active_at: Option<UnixMillis>,
    /// When it left.
    pub left_at: Option<UnixMillis>,
    /// Its state.
    pub state: ParticipantState,
}

/// A track of a room.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackRow {
    /// Sid.
    pub sid: String,
    /// The publisher.
    pub participant_sid: String,
    /// `AUDIO`, `VIDEO` or `DATA`.
    pub kind: String,
    /// `CAMERA`, `MICROPHONE`, ...
    pub source: String,
    /// The codec.
    pub mime_type: String,
    /// When it was published.
    pub published_at: Option<UnixMillis>,
    /// When it was unpublished.
    pub unpublished_at: Option<UnixMillis>,
}

/// A room with its participants and tracks.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomDetail {
    /// The room.
    pub room: RoomSummary,
    /// Its participants, by join time.
    pub participants: Vec<ParticipantRow>,
    /// Its tracks, by publication time.
    pub tracks: Vec<TrackRow>,
}

/// Which events of a room to list, in call order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventsQuery {
    /// The room.
    pub room_sid: String,
    /// Only events of this `AnalyticsEventType` name.
    pub event_type: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Start after this position.
    pub after: Option<i64>,
}

/// A stored event and its position in call order.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position across the store's life, increasing in call order.
    pub position: i64,
    /// The `AnalyticsEventType` name (the payload omits it for `ROOM_CREATED`, whose number is 0).
    pub event_type: String,
    /// The event in the protobuf JSON mapping.
    pub payload: String,
}

/// Which stats windows to return.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsQuery {
    /// Only this room.
    pub room_sid: Option<String>,
    /// Only this participant.
    pub participant_sid: Option<String>,
    /// Only this track.
    pub track_sid: Option<String>,
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Windows ending after this time.
    pub from: Option<UnixMillis>,
    /// Windows starting before this time.
    pub to: Option<UnixMillis>,
    /// At most this many windows.
    pub limit: u32,
}

/// A node and what is known of it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSummary {
    /// The node id.
    pub node_id: String,
    /// First time anything of it was stored.
    pub first_seen: UnixMillis,
    /// Last time anything of it was stored.
    pub last_seen: UnixMillis,
    /// Its latest room states.
    pub rooms: Option<NodeRoomsRecord>,
}

/// Row counts, for tests, the demo and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Analytics events.
    pub events: u64,
    /// Stats windows.
    pub stats_windows: u64,
    /// Samples folded into those windows.
    pub samples: u64,
    /// Rooms.
    pub rooms: u64,
    /// Open rooms.
    pub active_rooms: u64,
    /// Participants currently joined or active.
    pub active_participants: u64,
    /// Tracks currently published.
    pub published_tracks: u64,
    /// Node rate cells.
    pub rate_cells: u64,
}

/// What a retention pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneCounts {
    /// Events removed.
    pub events: u64,
    /// Stats windows removed.
    pub stats_windows: u64,
    /// Node rate cells removed.
    pub rate_cells: u64,
    /// Ended rooms removed.
    pub rooms: u64,
    /// Participants of those rooms removed.
    pub participants: u64,
    /// Tracks of those rooms removed.
    pub tracks: u64,
    /// Delivered or dead webhook deliveries removed, with their attempts.
    pub deliveries: u64,
    /// Webhook messages no delivery refers to any more, removed.
    pub messages: u64,
    /// Writers' marks ([`WriteMark`]) not moved since the cutoff, removed.
    pub write_marks: u64,
}

/// A webhook to store in the outbox with the event that caused it, for the endpoints it is for.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingWebhook {
    /// The message.
    pub message: WebhookMessage,
    /// The endpoints it goes to (already filtered); one delivery each.
    pub endpoint_ids: Vec<String>,
}

/// A webhook message: the exact body every attempt to every endpoint sends.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookMessage {
    /// What makes the message one, as [`EventRecord::key`] does an event: a key written twice
    /// is stored once (with the deliveries of its first write). By default the webhook's id,
    /// for ids that name the same webhook whenever it is made again (derived from an origin or
    /// an issue, as a room's report); a message whose id was drawn at random is keyed by
    /// [`EventRecord::drawn_key`] or [`EventRecord::origin_key`], which keep the store's index
    /// of keys appended to.
    pub key: String,
    /// The rendered event: id, name, ordering key, subject, body.
    pub webhook: RenderedWebhook,
    /// The `AE_` id of the analytics event the same call produced, if any.
    pub event_id: String,
    /// When the call was made.
    pub created_at: UnixMillis,
}

impl WebhookMessage {
    /// The message of a rendered webhook, caused by the analytics event `event_id` (or none),
    /// keyed by the webhook's id.
    pub fn new(webhook: RenderedWebhook, event_id: String, at: UnixMillis) -> Self {
        Self { key: webhook.id.clone(), webhook, event_id, created_at: at }
    }
}

/// A delivery's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for an attempt, or between attempts.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Every scheduled attempt failed (or its endpoint was deleted); kept for replay.
    Dead,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    /// The API's name (`pending`, `delivered`, `dead`), also the stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// Parses [`DeliveryStatus::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether a delivery in this status can be made pending again (a retry or a replay): a
    /// finished one. A pending delivery is brought forward instead.
    pub fn can_requeue(self) -> bool {
        self != Self::Pending
    }
}

/// A delivery the dispatcher has to make: what it sends, where, and how far along it is.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingDelivery {
    /// The delivery's id: increasing in the order messages were produced.
    pub id: i64,
    /// The message.
    pub message_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The ordering key.
    pub resource_key: String,
    /// The event name.
    pub event: String,
    /// The body.
    pub payload: String,
    /// What it is about.
    pub subject: WebhookSubject,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts made before the last requeue: the schedule restarts from there.
    pub retry_base: u32,
    /// When the next attempt is due.
    pub next_attempt_at: UnixMillis,
    /// When the message was produced.
    pub created_at: UnixMillis,
}

/// How an attempt ended, and what happens to its delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// A 2xx answer: delivered.
    Delivered,
    /// Failed; try again at this time.
    Retry(UnixMillis),
    /// Failed, and no attempt is left: dead.
    Dead,
}

/// One delivery attempt, to record.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: i64,
    /// The claim it was made under: recorded only while that claim is current.
    pub claim: ClaimToken,
    /// Its number, from 1, over the delivery's life.
    pub attempt: u32,
    /// When it started.
    pub started_at: UnixMillis,
    /// How long it took.
    pub duration_ms: i64,
    /// The HTTP status, if an answer came.
    pub status_code: Option<u16>,
    /// What went wrong, if it failed.
    pub error: Option<String>,
    /// What happens next.
    pub outcome: AttemptOutcome,
}

/// A delivery, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRecord {
    /// Id.
    pub id: i64,
    /// The `EV_` id of its message.
    pub message_id: String,
    /// The event name.
    pub event: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// The ordering key.
    pub resource_key: String,
    /// Its status.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status received.
    pub last_status_code: Option<u16>,
    /// The last error.
    pub last_error: Option<String>,
    /// When the message was produced.
    pub created_at: UnixMillis,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<UnixMillis>,
    /// When it was delivered.
    pub delivered_at: Option<UnixMillis>,
}

/// One recorded attempt, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRow {
    /// Its number.
    pub attempt: u32,
    /// When it started.
    pub started_at: UnixMillis,
    /// How long it took.
    pub duration_ms: i64,
    /// The HTTP status, if an answer came.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Which deliveries to list, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveriesQuery {
    /// Only this endpoint's.
    pub endpoint_id: Option<String>,
    /// Only in this status.
    pub status: Option<DeliveryStatus>,
    /// Only of this event name.
    pub event: Option<String>,
    /// At most this many.
    pub limit: u32,
    /// Only with an id below this (the next page).
    pub before: Option<i64>,
}

/// Which deliveries a replay requeues.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayQuery {
    /// The endpoint.
    pub endpoint_id: String,
    /// Messages produced at or after this.
    pub since: UnixMillis,
    /// Messages produced before this.
    pub until: UnixMillis,
    /// Deliveries in this status (dead or delivered).
    pub status: DeliveryStatus,
}

/// A webhook endpoint, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointRecord {
    /// Id.
    pub id: String,
    /// Where to POST.
    pub url: String,
    /// How requests are signed.
    pub signing: Signing,
    /// LiveKit signing: the JWT issuer.
    pub api_key: String,
    /// The signing secret.
    pub secret: String,
    /// Only these events, if any.
    pub include_events: Vec<String>,
    /// Not these events.
    pub exclude_events: Vec<String>,
    /// Whether deliveries are made to it.
    pub enabled: bool,
    /// Where it comes from.
    pub source: EndpointSource,
    /// When it was created.
    pub created_at: UnixMillis,
}

/// Deliveries by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Pending.
    pub pending: u64,
    /// Delivered.
    pub delivered: u64,
    /// Dead.
    pub dead: u64,
}

/// What a write created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Webhook deliveries created (a repeated message creates none).
    pub deliveries: u64,
    /// Nothing was written: the batch's fence no longer holds (see [`WriteBatch::fence`]).
    pub fenced: bool,
    /// Nothing was written: the batch's mark says it was committed before ([`WriteMark`]).
    pub repeated: bool,
}

/// How a webhook endpoint's requests are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// LiveKit's JWT in `Authorization` (what LiveKit's `WebhookReceiver` verifies).
    Livekit,
    /// Standard Webhooks headers.
    Standard,
}

impl Signing {
    /// The configuration's and the API's name, also the stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Livekit => "livekit",
            Self::Standard => "standard",
        }
    }

    /// Parses [`Signing::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Livekit, Self::Standard].into_iter().find(|signing| signing.as_str() == name)
    }
}

/// Where a webhook endpoint comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointSource {
    /// A configuration file (kept while a live instance's configuration lists it).
    Config,
    /// The endpoints API.
    Api,
}

impl EndpointSource {
    /// The API's name, also the stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }

    /// Parses [`EndpointSource::as_str`]'s names.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Config, Self::Api].into_iter().find(|source| source.as_str() == name)
    }
}

/// What becomes of a delivery when an attempt is recorded: the rule every backend applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Its new status.
    pub status: DeliveryStatus,
    /// When its next attempt is due (pending only).
    pub next_attempt_at: Option<UnixMillis>,
    /// When it was delivered (delivered only).
    pub delivered_at: Option<UnixMillis>,
}

impl AttemptRecord {
    /// When the attempt finished.
    pub fn finished_at(&self) -> UnixMillis {
        self.started_at.plus_millis(self.duration_ms)
    }

    /// What the attempt makes of its delivery: delivered at its end, pending until the retry's
    /// time, or dead.
    pub fn transition(&self) -> Transition {
        match self.outcome {
            AttemptOutcome::Delivered => Transition {
                status: DeliveryStatus::Delivered,
                next_attempt_at: None,
                delivered_at: Some(self.finished_at()),
            },
            AttemptOutcome::Retry(at) => Transition {
                status: DeliveryStatus::Pending,
                next_attempt_at: Some(at),
                delivered_at: None,
            },
            AttemptOutcome::Dead => Transition {
                status: DeliveryStatus::Dead,
                next_attempt_at: None,
                delivered_at: None,
            },
        }
    }
}

/// The claim an attempt is made under: its owner and the delivery's epoch when it was claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToken {
    /// The dispatcher (instance id) that holds it.
    pub owner: String,
    /// The delivery's claim epoch: bumped at every claim, so a later claim fences this one.
    pub epoch: i64,
}

/// What to claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRequest {
    /// Who claims.
    pub owner: String,
    /// Now: deliveries due by then, claims expired by then.
    pub now: UnixMillis,
    /// How long the claims last.
    pub lease_ms: i64,
    /// Per endpoint, how many queues (endpoint and resource key) at most.
    pub slots: Vec<(String, u32)>,
    /// Per queue, how many deliveries at most: its head and the pending deliveries after it, in
    /// id order, as long as each is due and unclaimed (a run the claimant sends one after the
    /// other). 1: heads only.
    pub run: u32,
}

impl ClaimRequest {
    /// When claims made now expire.
    pub fn expires_at(&self) -> UnixMillis {
        self.now.plus_millis(self.lease_ms)
    }
}

/// A claimed delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub delivery: PendingDelivery,
    /// The claim to record its attempt under.
    pub claim: ClaimToken,
    /// When the claim expires.
    pub expires_at: UnixMillis,
}

/// What a claim returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claimed {
    /// The deliveries claimed, in id order within each queue (a queue's head first, then its
    /// run).
    pub deliveries: Vec<ClaimedDelivery>,
    /// When the earliest pending delivery of the endpoints asked for that is not due yet will
    /// be due (a hint for when to claim again; polling still runs).
    pub next_due: Option<UnixMillis>,
}

/// An instance's configured endpoints, to list.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfiguredEndpoints {
    /// The instance.
    pub instance_id: String,
    /// Its configured endpoints (source [`EndpointSource::Config`]).
    pub endpoints: Vec<EndpointRecord>,
    /// Now.
    pub now: UnixMillis,
    /// How long an instance's listing lasts without a refresh.
    pub liveness_ms: i64,
}

// === Cluster mode ===

/// A partition's lease as its holder knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lease {
    /// The partition.
    pub partition: u32,
    /// Bumped at every take: what fences a former holder's writes.
    pub epoch: i64,
}

/// What one heartbeat found ([`crate::ClusterStore::cluster_heartbeat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// The instances seen within the lease, by id (this one included).
    pub live: Vec<String>,
    /// This instance's fair share.
    pub share: u32,
    /// The leases it holds now (renewed or taken), by partition.
    pub held: Vec<Lease>,
    /// Of them, those taken by this heartbeat.
    pub taken: Vec<Lease>,
}

/// An instance in `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Its id.
    pub id: String,
    /// Its last heartbeat.
    pub last_seen: UnixMillis,
    /// The partitions whose lease it holds now, ascending.
    pub partitions: Vec<u32>,
}

/// The fair share of `partitions` for the instance at `rank` among `live` instances (ranked by
/// id): `partitions / live`, and one more for the first `partitions % live`, so the shares add
/// up to `partitions` and differ by at most one. Zero live instances: zero.
pub fn fair_share(partitions: u32, live: u32, rank: u32) -> u32 {
    if live == 0 {
        return 0;
    }
    partitions / live + u32::from(rank < partitions % live)
}

/// A list of strings as a text column stores it: a JSON array.
fn string_list_text(list: &[String]) -> String {
    serde_json::to_string(list).expect("strings serialize")
}

/// A list of strings from its stored text; a text that is not an array of strings is corrupt
/// (`what` names the column in the error).
fn string_list_from_text(text: &str, what: &str) -> Result<Vec<String>, crate::StoreError> {
    serde_json::from_str(text)
        .map_err(|error| crate::StoreError::Corrupt(format!("stored {what}: {error}")))
}
