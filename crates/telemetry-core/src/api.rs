//! LiveKit's `TelemetryService` methods for an SFU that embeds the core: each builds its
//! [`Call`] and applies it as made now by the configured node.
//!
//! Arguments and flags are LiveKit's. Guards are names (see [`crate::DEFAULT_GUARD`]).

use livekit_protocol as lk;

use crate::call::Call;
use crate::keys::StatsKey;
use crate::service::{Shed, TelemetryService};

impl TelemetryService {
    fn now_apply(&self, call: Call) {
        // Only `TrackStats` can fail, and it has its own method.
        let _ = self.apply(self.now(), call);
    }

    /// `TrackStats`.
    ///
    /// # Errors
    ///
    /// Returns [`Shed`] when the sample was not accepted.
    pub fn track_stats(
        &self,
        room_id: &str,
        room_name: &str,
        key: &StatsKey,
        stat: &lk::AnalyticsStat,
    ) -> Result<(), Shed> {
        self.track_stats_at(self.now(), room_id, room_name, key, stat).map(|_| ())
    }

    /// `RoomStarted`.
    pub fn room_started(&self, room: lk::Room) {
        self.now_apply(Call::RoomStarted { room });
    }

    /// `RoomEnded`.
    pub fn room_ended(&self, room: lk::Room) {
        self.now_apply(Call::RoomEnded { room });
    }

    /// `ParticipantJoined`.
    pub fn participant_joined(
        &self,
        room: lk::Room,
        participant: lk::ParticipantInfo,
        client_info: Option<lk::ClientInfo>,
        client_meta: Option<lk::AnalyticsClientMeta>,
        should_send_event: bool,
        guard: &str,
    ) {
        self.now_apply(Call::ParticipantJoined {
            room,
            participant,
            client_info,
            client_meta,
            should_send_event,
            guard: guard.to_owned(),
        });
    }

    /// `ParticipantActive`.
    pub fn participant_active(
        &self,
        room: lk::Room,
        participant: lk::ParticipantInfo,
        client_meta: Option<lk::AnalyticsClientMeta>,
        is_migration: bool,
        guard: &str,
    ) {
        self.now_apply(Call::ParticipantActive {
            room,
            participant,
            client_meta,
            is_migration,
            guard: guard.to_owned(),
        });
    }

    /// `ParticipantResumed`.
    pub fn participant_resumed(
        &self,
        room: lk::Room,
        participant: lk::ParticipantInfo,
        node_id: &str,
        reason: lk::ReconnectReason,
        guard: &str,
    ) {
        self.now_apply(Call::ParticipantResumed {
            room,
            participant,
            node_id: node_id.to_owned(),
            reason: reason as i32,
            guard: guard.to_owned(),
        });
    }

    /// `ParticipantLeft`.
    pub fn participant_left(
        &self,
        room: lk::Room,
        participant: lk::ParticipantInfo,
        should_send_event: bool,
        guard: &str,
    ) {
        self.now_apply(Call::ParticipantLeft {
            room,
            participant,
            should_send_event,
            guard: guard.to_owned(),
        });
    }

    /// `TrackPublishRequested`.
    pub fn track_publish_requested(
        &self,
        room: lk::Room,
        participant_id: &str,
        identity: &str,
        track: lk::TrackInfo,
        should_send_event: bool,
    ) {
        self.now_apply(Call::TrackPublishRequested {
            room,
            participant_id: participant_id.to_owned(),
            identity: identity.to_owned(),
            track,
            should_send_event,
        });
    }

    /// `TrackPublished`.
    pub fn track_published(
        &self,
        room: lk::Room,
        participant_id: &str,
        identity: &str,
        track: lk::TrackInfo,
        should_send_event: bool,
    ) {
        self.now_apply(Call::TrackPublished {
            room,
            participant_id: participant_id.to_owned(),
            identity: identity.to_owned(),
            track,
            should_send_event,
        });
    }

    /// `TrackUnpublished`.
    pub fn track_unpublished(
        &self,
        room: lk::Room,
        participant_id: &str,
        identity: &str,
        track: lk::TrackInfo,
        was_published_locally: bool,
        should_send_event: bool,
    ) {
        self.now_apply(Call::TrackUnpublished {
            room,
            participant_id: participant_id.to_owned(),
            identity: identity.to_owned(),
            track,
            was_published_locally,
            should_send_event,
        });
    }

    /// `TrackSubscribeRequested`.
    pub fn track_subscribe_requested(
        &self,
        room: lk::Room,
        participant_id: &str,
        track: lk::TrackInfo,
    ) {
        self.now_apply(Call::TrackSubscribeRequested {
            room,
            participant_id: participant_id.to_owned(),
            track,
        });
    }

    /// `TrackSubscribed`.
    pub fn track_subscribed(
        &self,
        room: lk::Room,
        participant_id: &str,
        track: lk::TrackInfo,
        publisher: lk::ParticipantInfo,
        should_send_event: bool,
    ) {
        self.now_apply(Call::TrackSubscribed {
            room,
            participant_id: participant_id.to_owned(),
            track,
            publisher,
            should_send_event,
        });
    }

    /// `TrackUnsubscribed`.
    pub fn track_unsubscribed(
        &self,
        room: lk::Room,
        participant_id: &str,
        track: lk::TrackInfo,
        should_send_event: bool,
    ) {
        self.now_apply(Call::TrackUnsubscribed {
            room,
            participant_id: participant_id.to_owned(),
            track,
            should_send_event,
        });
    }

    /// `TrackSubscribeFailed`.
    pub fn track_subscribe_failed(
        &self,
        room: lk::Room,
        participant_id: &str,
        track_id: &str,
        error: &str,
        is_user_error: bool,
    ) {
        self.now_apply(Call::TrackSubscribeFailed {
            room,
            participant_id: participant_id.to_owned(),
            track_id: track_id.to_owned(),
            error: error.to_owned(),
            is_user_error,
        });
    }

    /// `TrackMuted`.
    pub fn track_muted(&self, room: lk::Room, participant_id: &str, track: lk::TrackInfo) {
        self.now_apply(Call::TrackMuted { room, participant_id: participant_id.to_owned(), track });
    }

    /// `TrackUnmuted`.
    pub fn track_unmuted(&self, room: lk::Room, participant_id: &str, track: lk::TrackInfo) {
        self.now_apply(Call::TrackUnmuted {
            room,
            participant_id: participant_id.to_owned(),
            track,
        });
    }

    /// `TrackPublishedUpdate`.
    pub fn track_published_update(
        &self,
        room: lk::Room,
        participant_id: &str,
        track: lk::TrackInfo,
    ) {
        self.now_apply(Call::TrackPublishedUpdate {
            room,
            participant_id: participant_id.to_owned(),
            track,
        });
    }

    /// `TrackMaxSubscribedVideoQuality`.
    pub fn track_max_subscribed_video_quality(
        &self,
        room: lk::Room,
        participant_id: &str,
        track: lk::TrackInfo,
        mime: &str,
        max_quality: lk::VideoQuality,
    ) {
        self.now_apply(Call::TrackMaxSubscribedVideoQuality {
            room,
            participant_id: participant_id.to_owned(),
            track,
            mime: mime.to_owned(),
            max_quality: max_quality as i32,
        });
    }

    /// `TrackPublishRTPStats`.
    pub fn track_publish_rtp_stats(
        &self,
        room: lk::Room,
        participant_id: &str,
        track_id: &str,
        mime: &str,
        layer: i32,
        stats: lk::RtpStats,
    ) {
        self.now_apply(Call::TrackPublishRtpStats {
            room,
            participant_id: participant_id.to_owned(),
            track_id: track_id.to_owned(),
            mime: mime.to_owned(),
            layer,
            stats,
        });
    }

    /// `TrackSubscribeRTPStats`.
    pub fn track_subscribe_rtp_stats(
        &self,
        room: lk::Room,
        participant_id: &str,
        track_id: &str,
        mime: &str,
        stats: lk::RtpStats,
    ) {
        self.now_apply(Call::TrackSubscribeRtpStats {
            room,
            participant_id: participant_id.to_owned(),
            track_id: track_id.to_owned(),
            mime: mime.to_owned(),
            stats,
        });
    }

    /// `EgressStarted`.
    pub fn egress_started(&self, info: lk::EgressInfo) {
        self.now_apply(Call::EgressStarted { info });
    }

    /// `EgressUpdated`.
    pub fn egress_updated(&self, info: lk::EgressInfo) {
        self.now_apply(Call::EgressUpdated { info });
    }

    /// `EgressEnded`.
    pub fn egress_ended(&self, info: lk::EgressInfo) {
        self.now_apply(Call::EgressEnded { info });
    }

    /// `NotifyEgressEvent`: sends the egress webhook `event` without an analytics event.
    pub fn notify_egress_event(&self, event: &str, info: lk::EgressInfo) {
        self.now_apply(Call::NotifyEgressEvent { event: event.to_owned(), info });
    }

    /// `IngressCreated`.
    pub fn ingress_created(&self, info: lk::IngressInfo) {
        self.now_apply(Call::IngressCreated { info });
    }

    /// `IngressDeleted`.
    pub fn ingress_deleted(&self, info: lk::IngressInfo) {
        self.now_apply(Call::IngressDeleted { info });
    }

    /// `IngressStarted`.
    pub fn ingress_started(&self, info: lk::IngressInfo) {
        self.now_apply(Call::IngressStarted { info });
    }

    /// `IngressUpdated`.
    pub fn ingress_updated(&self, info: lk::IngressInfo) {
        self.now_apply(Call::IngressUpdated { info });
    }

    /// `IngressEnded`.
    pub fn ingress_ended(&self, info: lk::IngressInfo) {
        self.now_apply(Call::IngressEnded { info });
    }

    /// `LocalRoomState`.
    pub fn local_room_state(&self, node_rooms: lk::AnalyticsNodeRooms) {
        self.now_apply(Call::LocalRoomState { node_rooms });
    }

    /// `Report`.
    pub fn report(&self, report: lk::ReportInfo) {
        self.now_apply(Call::Report { report });
    }

    /// `APICall`.
    pub fn api_call(&self, info: lk::ApiCallInfo) {
        self.now_apply(Call::ApiCall { info });
    }

    /// `Webhook`: the processed-webhook hook.
    pub fn webhook(&self, info: lk::WebhookInfo) {
        self.now_apply(Call::Webhook { info });
    }
}
