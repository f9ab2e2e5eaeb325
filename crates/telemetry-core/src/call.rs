//! The calls of LiveKit's `TelemetryService` interface as data: one variant per method, carrying
//! the method's arguments (reference §2.4). The server decodes ingested `TelemetryCall`s into
//! these; in-process callers use the methods of [`crate::TelemetryService`], which build them.

use livekit_protocol as lk;

use crate::keys::StatsKey;

/// The guard name used when a caller gives none.
pub const DEFAULT_GUARD: &str = "default";

/// One call of the `TelemetryService` interface.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Call {
    /// `TrackStats`: one stats sample for a track and direction.
    TrackStats {
        /// The room's sid.
        room_id: String,
        /// The room's name (unused, as in LiveKit: the worker knows it).
        room_name: String,
        /// Which worker, track and direction.
        key: StatsKey,
        /// The sample: counter deltas since the previous sample.
        stat: lk::AnalyticsStat,
    },
    /// `RoomStarted`.
    RoomStarted {
        /// The room.
        room: lk::Room,
    },
    /// `RoomEnded`.
    RoomEnded {
        /// The room at close time.
        room: lk::Room,
    },
    /// `ParticipantJoined`: signalling connected; creates or joins the stats worker.
    ParticipantJoined {
        /// The room.
        room: lk::Room,
        /// The participant.
        participant: lk::ParticipantInfo,
        /// The client's SDK and platform.
        client_info: Option<lk::ClientInfo>,
        /// Region, node, address, connect time.
        client_meta: Option<lk::AnalyticsClientMeta>,
        /// Whether to emit `PARTICIPANT_JOINED` (false from the signal-bytes collector).
        should_send_event: bool,
        /// The caller's reference guard.
        guard: String,
    },
    /// `ParticipantActive`: media connected.
    ParticipantActive {
        /// The room.
        room: lk::Room,
        /// The participant.
        participant: lk::ParticipantInfo,
        /// Connect time and connection type.
        client_meta: Option<lk::AnalyticsClientMeta>,
        /// A migration: no `participant_joined` webhook.
        is_migration: bool,
        /// The caller's reference guard.
        guard: String,
    },
    /// `ParticipantResumed`: a session resumed, possibly on another node.
    ParticipantResumed {
        /// The room.
        room: lk::Room,
        /// The participant.
        participant: lk::ParticipantInfo,
        /// The node the session resumed on.
        node_id: String,
        /// `ReconnectReason` number.
        reason: i32,
        /// The caller's reference guard.
        guard: String,
    },
    /// `ParticipantLeft`.
    ParticipantLeft {
        /// The room.
        room: lk::Room,
        /// The participant.
        participant: lk::ParticipantInfo,
        /// Whether to emit events and webhooks.
        should_send_event: bool,
        /// The caller's reference guard.
        guard: String,
    },
    /// `TrackPublishRequested`.
    TrackPublishRequested {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The publisher's identity.
        identity: String,
        /// The track.
        track: lk::TrackInfo,
        /// Whether to emit the event.
        should_send_event: bool,
    },
    /// `TrackPublished`.
    TrackPublished {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The publisher's identity.
        identity: String,
        /// The track.
        track: lk::TrackInfo,
        /// Whether to emit event and webhook (false for migrated tracks).
        should_send_event: bool,
    },
    /// `TrackUnpublished`.
    TrackUnpublished {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The publisher's identity.
        identity: String,
        /// The track.
        track: lk::TrackInfo,
        /// Whether the track was published on this node (decrements the published gauge).
        was_published_locally: bool,
        /// Whether to emit event and webhook (false when expected to resume).
        should_send_event: bool,
    },
    /// `TrackSubscribeRequested`.
    TrackSubscribeRequested {
        /// The room.
        room: lk::Room,
        /// The subscriber's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
    },
    /// `TrackSubscribed`.
    TrackSubscribed {
        /// The room.
        room: lk::Room,
        /// The subscriber's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
        /// The publisher of the track.
        publisher: lk::ParticipantInfo,
        /// Whether to emit the event (true once per subscription).
        should_send_event: bool,
    },
    /// `TrackUnsubscribed`.
    TrackUnsubscribed {
        /// The room.
        room: lk::Room,
        /// The subscriber's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
        /// Whether to emit the event.
        should_send_event: bool,
    },
    /// `TrackSubscribeFailed`.
    TrackSubscribeFailed {
        /// The room.
        room: lk::Room,
        /// The subscriber's sid.
        participant_id: String,
        /// The track that failed.
        track_id: String,
        /// The error text.
        error: String,
        /// Whether the failure is the user's (permissions, missing track).
        is_user_error: bool,
    },
    /// `TrackMuted`.
    TrackMuted {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
    },
    /// `TrackUnmuted`.
    TrackUnmuted {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
    },
    /// `TrackPublishedUpdate`.
    TrackPublishedUpdate {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The track, layers included.
        track: lk::TrackInfo,
    },
    /// `TrackMaxSubscribedVideoQuality`.
    TrackMaxSubscribedVideoQuality {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The track.
        track: lk::TrackInfo,
        /// The codec.
        mime: String,
        /// `VideoQuality` number.
        max_quality: i32,
    },
    /// `TrackPublishRTPStats`: final RTP stats of a publisher buffer.
    TrackPublishRtpStats {
        /// The room.
        room: lk::Room,
        /// The publisher's sid.
        participant_id: String,
        /// The track.
        track_id: String,
        /// The codec.
        mime: String,
        /// The spatial layer.
        layer: i32,
        /// The stats.
        stats: lk::RtpStats,
    },
    /// `TrackSubscribeRTPStats`: final RTP stats of a down track.
    TrackSubscribeRtpStats {
        /// The room.
        room: lk::Room,
        /// The subscriber's sid.
        participant_id: String,
        /// The track.
        track_id: String,
        /// The codec.
        mime: String,
        /// The stats.
        stats: lk::RtpStats,
    },
    /// `EgressStarted`.
    EgressStarted {
        /// The egress.
        info: lk::EgressInfo,
    },
    /// `EgressUpdated`.
    EgressUpdated {
        /// The egress.
        info: lk::EgressInfo,
    },
    /// `EgressEnded`.
    EgressEnded {
        /// The egress.
        info: lk::EgressInfo,
    },
    /// `NotifyEgressEvent`: an egress webhook without analytics event (LiveKit uses it for failed
    /// auto-egress starts).
    NotifyEgressEvent {
        /// The webhook event name.
        event: String,
        /// The egress.
        info: lk::EgressInfo,
    },
    /// `IngressCreated`.
    IngressCreated {
        /// The ingress.
        info: lk::IngressInfo,
    },
    /// `IngressDeleted`.
    IngressDeleted {
        /// The ingress.
        info: lk::IngressInfo,
    },
    /// `IngressStarted`.
    IngressStarted {
        /// The ingress.
        info: lk::IngressInfo,
    },
    /// `IngressUpdated`.
    IngressUpdated {
        /// The ingress.
        info: lk::IngressInfo,
    },
    /// `IngressEnded`.
    IngressEnded {
        /// The ingress.
        info: lk::IngressInfo,
    },
    /// `LocalRoomState`: the node's rooms and participants.
    LocalRoomState {
        /// The rooms.
        node_rooms: lk::AnalyticsNodeRooms,
    },
    /// `Report`: a feature-usage report.
    Report {
        /// The report.
        report: lk::ReportInfo,
    },
    /// `APICall`: a server API call.
    ApiCall {
        /// The call.
        info: lk::ApiCallInfo,
    },
    /// `Webhook`: what happened to one webhook delivery (the processed hook).
    Webhook {
        /// The delivery outcome.
        info: lk::WebhookInfo,
    },
}

impl Call {
    /// Returns the method's name in the ingest API (`trackStats`, `roomStarted`, ...).
    pub fn method_name(&self) -> &'static str {
        match self {
            Call::TrackStats { .. } => "trackStats",
            Call::RoomStarted { .. } => "roomStarted",
            Call::RoomEnded { .. } => "roomEnded",
            Call::ParticipantJoined { .. } => "participantJoined",
            Call::ParticipantActive { .. } => "participantActive",
            Call::ParticipantResumed { .. } => "participantResumed",
            Call::ParticipantLeft { .. } => "participantLeft",
            Call::TrackPublishRequested { .. } => "trackPublishRequested",
            Call::TrackPublished { .. } => "trackPublished",
            Call::TrackUnpublished { .. } => "trackUnpublished",
            Call::TrackSubscribeRequested { .. } => "trackSubscribeRequested",
            Call::TrackSubscribed { .. } => "trackSubscribed",
            Call::TrackUnsubscribed { .. } => "trackUnsubscribed",
            Call::TrackSubscribeFailed { .. } => "trackSubscribeFailed",
            Call::TrackMuted { .. } => "trackMuted",
            Call::TrackUnmuted { .. } => "trackUnmuted",
            Call::TrackPublishedUpdate { .. } => "trackPublishedUpdate",
            Call::TrackMaxSubscribedVideoQuality { .. } => "trackMaxSubscribedVideoQuality",
            Call::TrackPublishRtpStats { .. } => "trackPublishRtpStats",
            Call::TrackSubscribeRtpStats { .. } => "trackSubscribeRtpStats",
            Call::EgressStarted { .. } => "egressStarted",
            Call::EgressUpdated { .. } => "egressUpdated",
            Call::EgressEnded { .. } => "egressEnded",
            Call::NotifyEgressEvent { .. } => "notifyEgressEvent",
            Call::IngressCreated { .. } => "ingressCreated",
            Call::IngressDeleted { .. } => "ingressDeleted",
            Call::IngressStarted { .. } => "ingressStarted",
            Call::IngressUpdated { .. } => "ingressUpdated",
            Call::IngressEnded { .. } => "ingressEnded",
            Call::LocalRoomState { .. } => "localRoomState",
            Call::Report { .. } => "report",
            Call::ApiCall { .. } => "apiCall",
            Call::Webhook { .. } => "webhook",
        }
    }
}
