//! Builders for the analytics events and webhook payloads of each call, as LiveKit's
//! `events.go` shapes them (reference §2.4, §3.7, §3.9), and the webhook resource key (§3.3).
//!
//! Ids, node and analytics key are stamped later, when the output is queued.

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::time::UnixMillis;

/// Webhook event names, as LiveKit sends them.
pub mod names {
    /// `RoomStarted`.
    pub const ROOM_STARTED: &str = "room_started";
    /// `RoomEnded`.
    pub const ROOM_FINISHED: &str = "room_finished";
    /// `ParticipantActive` unless migrating.
    pub const PARTICIPANT_JOINED: &str = "participant_joined";
    /// `ParticipantLeft` of a participant that became active.
    pub const PARTICIPANT_LEFT: &str = "participant_left";
    /// `ParticipantLeft` of a participant that never became active.
    pub const PARTICIPANT_CONNECTION_ABORTED: &str = "participant_connection_aborted";
    /// `TrackPublished`.
    pub const TRACK_PUBLISHED: &str = "track_published";
    /// `TrackUnpublished`.
    pub const TRACK_UNPUBLISHED: &str = "track_unpublished";
    /// `EgressStarted`.
    pub const EGRESS_STARTED: &str = "egress_started";
    /// `EgressUpdated`.
    pub const EGRESS_UPDATED: &str = "egress_updated";
    /// `EgressEnded`.
    pub const EGRESS_ENDED: &str = "egress_ended";
    /// `IngressStarted`.
    pub const INGRESS_STARTED: &str = "ingress_started";
    /// `IngressEnded`.
    pub const INGRESS_ENDED: &str = "ingress_ended";

    /// A quality issue opened (sent only to endpoints that include it).
    pub const QUALITY_DEGRADED: &str = "quality_degraded";
    /// A quality issue closed (sent only to endpoints that include it).
    pub const QUALITY_RECOVERED: &str = "quality_recovered";
    /// A room's report when the room finished (sent only to endpoints that include it).
    pub const ROOM_REPORT: &str = "room_report";

    /// The webhook event names an endpoint receives only when its `includeEvents` names them.
    pub const OPT_IN: [&str; 3] = [QUALITY_DEGRADED, QUALITY_RECOVERED, ROOM_REPORT];

    /// Whether `name` is a webhook event name the service produces, opt-in ones included.
    pub fn is_known(name: &str) -> bool {
        ALL.contains(&name) || OPT_IN.contains(&name)
    }

    /// Every webhook event name the telemetry service produces for every endpoint that does not
    /// filter it out (the opt-in ones are in [`OPT_IN`]).
    pub const ALL: [&str; 12] = [
        ROOM_STARTED,
        ROOM_FINISHED,
        PARTICIPANT_JOINED,
        PARTICIPANT_LEFT,
        PARTICIPANT_CONNECTION_ABORTED,
        TRACK_PUBLISHED,
        TRACK_UNPUBLISHED,
        EGRESS_STARTED,
        EGRESS_UPDATED,
        EGRESS_ENDED,
        INGRESS_STARTED,
        INGRESS_ENDED,
    ];
}

/// Returns `Room{sid, name}`.
pub(crate) fn minimal_room(room: &lk::Room) -> lk::Room {
    lk::Room { sid: room.sid.clone(), name: room.name.clone(), ..Default::default() }
}

/// An event with only its type and time set.
pub(crate) fn bare_event(event_type: Type, at: UnixMillis) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        r#type: event_type as i32,
        timestamp: Some(at.to_timestamp()),
        ..Default::default()
    }
}

/// LiveKit's `newParticipantEvent`: full room and participant, their ids, time now.
pub(crate) fn participant_event(
    event_type: Type,
    room: &lk::Room,
    participant: &lk::ParticipantInfo,
    at: UnixMillis,
) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        room_id: room.sid.clone(),
        room: Some(room.clone()),
        participant_id: participant.sid.clone(),
        participant: Some(participant.clone()),
        ..bare_event(event_type, at)
    }
}

/// LiveKit's `newTrackEvent`: minimal room, participant `{sid}`, the track and its id.
pub(crate) fn track_event(
    event_type: Type,
    room: &lk::Room,
    participant_id: &str,
    track: lk::TrackInfo,
    at: UnixMillis,
) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        room_id: room.sid.clone(),
        room: Some(minimal_room(room)),
        participant_id: participant_id.to_owned(),
        participant: Some(lk::ParticipantInfo {
            sid: participant_id.to_owned(),
            ..Default::default()
        }),
        track_id: track.sid.clone(),
        track: Some(track),
        ..bare_event(event_type, at)
    }
}

/// The events of the final RTP stats calls: minimal room and ids, no participant or track object.
pub(crate) fn rtp_stats_event(
    event_type: Type,
    room: &lk::Room,
    participant_id: &str,
    track_id: &str,
    mime: &str,
    stats: lk::RtpStats,
    at: UnixMillis,
) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        room_id: room.sid.clone(),
        room: Some(minimal_room(room)),
        participant_id: participant_id.to_owned(),
        track_id: track_id.to_owned(),
        mime: mime.to_owned(),
        rtp_stats: Some(stats),
        ..bare_event(event_type, at)
    }
}

/// LiveKit's egress events: egress id, room id and the egress.
pub(crate) fn egress_event(
    event_type: Type,
    info: &lk::EgressInfo,
    at: UnixMillis,
) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        egress_id: info.egress_id.clone(),
        room_id: info.room_id.clone(),
        egress: Some(info.clone()),
        ..bare_event(event_type, at)
    }
}

/// LiveKit's ingress events: ingress id and the ingress.
pub(crate) fn ingress_event(
    event_type: Type,
    info: &lk::IngressInfo,
    at: UnixMillis,
) -> lk::AnalyticsEvent {
    lk::AnalyticsEvent {
        ingress_id: info.ingress_id.clone(),
        ingress: Some(info.clone()),
        ..bare_event(event_type, at)
    }
}

/// A webhook event with its name and `created_at` (seconds) set.
pub(crate) fn webhook(name: &str, at: UnixMillis) -> lk::WebhookEvent {
    lk::WebhookEvent { event: name.to_owned(), created_at: at.as_secs(), ..Default::default() }
}

/// The egress webhook of `NotifyEgressEvent`: room `{sid, name}` from the egress, and the egress.
pub(crate) fn egress_webhook(
    name: &str,
    info: &lk::EgressInfo,
    at: UnixMillis,
) -> lk::WebhookEvent {
    lk::WebhookEvent {
        room: Some(lk::Room {
            sid: info.room_id.clone(),
            name: info.room_name.clone(),
            ..Default::default()
        }),
        egress_info: Some(info.clone()),
        ..webhook(name, at)
    }
}

/// The ingress webhooks: room `{name}` only, and the ingress.
pub(crate) fn ingress_webhook(
    name: &str,
    info: &lk::IngressInfo,
    at: UnixMillis,
) -> lk::WebhookEvent {
    lk::WebhookEvent {
        room: Some(lk::Room { name: info.room_name.clone(), ..Default::default() }),
        ingress_info: Some(info.clone()),
        ..webhook(name, at)
    }
}

/// The key that orders webhook deliveries (LiveKit's `EventKey`, reference §3.3): the egress id if
/// the event carries an egress, else the ingress id, else the room name, else the participant
/// identity, else the track sid, else `"default"`. Presence decides, not emptiness: an event with
/// an egress whose id is empty is keyed `""`.
pub fn webhook_resource_key(event: &lk::WebhookEvent) -> &str {
    if let Some(egress) = &event.egress_info {
        &egress.egress_id
    } else if let Some(ingress) = &event.ingress_info {
        &ingress.ingress_id
    } else if let Some(room) = &event.room {
        &room.name
    } else if let Some(participant) = &event.participant {
        &participant.identity
    } else if let Some(track) = &event.track {
        &track.sid
    } else {
        "default"
    }
}

/// Whether an event name passes an endpoint's filter: a non-empty include list admits only its
/// names (and the exclude list is ignored); otherwise a non-empty exclude list blocks its names
/// (reference §3.6).
///
/// The opt-in names ([`names::OPT_IN`]) pass only an include list that names them.
pub fn passes_filter(event: &str, include: &[String], exclude: &[String]) -> bool {
    if names::OPT_IN.contains(&event) {
        return include.iter().any(|name| name == event);
    }
    if !include.is_empty() {
        return include.iter().any(|name| name == event);
    }
    !exclude.iter().any(|name| name == event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_key_prefers_egress_then_ingress_then_room_then_identity_then_track() {
        let mut event = lk::WebhookEvent {
            track: Some(lk::TrackInfo { sid: "TR_1".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(webhook_resource_key(&event), "TR_1");
        event.participant =
            Some(lk::ParticipantInfo { identity: "alice".into(), ..Default::default() });
        assert_eq!(webhook_resource_key(&event), "alice");
        event.room = Some(lk::Room { name: "demo".into(), ..Default::default() });
        assert_eq!(webhook_resource_key(&event), "demo");
        event.ingress_info =
            Some(lk::IngressInfo { ingress_id: "IN_1".into(), ..Default::default() });
        assert_eq!(webhook_resource_key(&event), "IN_1");
        event.egress_info = Some(lk::EgressInfo::default());
        assert_eq!(webhook_resource_key(&event), "", "presence decides, not emptiness");
        assert_eq!(webhook_resource_key(&lk::WebhookEvent::default()), "default");
    }

    #[test]
    fn include_wins_over_exclude() {
        let list = |names: &[&str]| names.iter().map(|&n| n.to_owned()).collect::<Vec<_>>();
        assert!(passes_filter("room_started", &[], &[]));
        assert!(passes_filter("room_started", &list(&["room_started"]), &[]));
        assert!(!passes_filter("room_finished", &list(&["room_started"]), &[]));
        assert!(!passes_filter("room_started", &[], &list(&["room_started"])));
        assert!(passes_filter(
            "room_started",
            &list(&["room_started"]),
            &list(&["room_started", "room_finished"])
        ));
        assert!(!passes_filter(
            "room_finished",
            &list(&["room_started"]),
            &list(&["room_started", "room_finished"])
        ));
    }
}
