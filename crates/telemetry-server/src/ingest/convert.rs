//! From a decoded `TelemetryCall` to the core's `Call`: values validated (see
//! [`super::validate`]), defaults applied (`at`, `nodeId`, `shouldSendEvent`, `guard`), required
//! arguments checked, each problem reported with the field's name.

use telemetry_core::proto as lk;
use telemetry_core::{Call, DEFAULT_GUARD, Direction, StatsKey, UnixMillis};
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

use super::validate::{Checker, Limits};

/// A call ready for the core.
#[derive(Debug)]
pub struct Converted {
    /// When the SFU made it.
    pub at: UnixMillis,
    /// The reporting node.
    pub node_id: String,
    /// The call.
    pub call: Call,
}

/// A call ready for the core, as [`apply_calls`](super::apply_calls) takes it: a stats sample
/// apart (it is applied by reference, never built into the core's `Call`, which is as large as
/// its largest lifecycle call), any other call boxed, so that either moves cheaply.
#[derive(Debug)]
pub struct Prepared {
    /// When the SFU made it.
    pub at: UnixMillis,
    /// The reporting node.
    pub node_id: String,
    /// The call.
    pub call: PreparedCall,
}

/// The call of a [`Prepared`].
#[derive(Debug)]
// The large variant is the common one (a sample, about 400 bytes): kept inline, boxing it would
// allocate once per sample.
#[allow(clippy::large_enum_variant)]
pub enum PreparedCall {
    /// A `TrackStats` call's arguments, as [`Call::TrackStats`] holds them.
    TrackStats(StatsSample),
    /// Any other call.
    Other(Box<Call>),
}

/// A `TrackStats` call's arguments.
#[derive(Debug)]
pub struct StatsSample {
    /// The room's sid.
    pub room_id: String,
    /// The room's name.
    pub room_name: String,
    /// Which worker, track and direction.
    pub key: StatsKey,
    /// The sample.
    pub stat: lk::AnalyticsStat,
}

/// Converts one call.
///
/// # Errors
///
/// A message naming the field at fault.
pub fn convert(
    call: v1::TelemetryCall,
    received_at: UnixMillis,
    default_node: &str,
    limits: &Limits,
) -> Result<Converted, String> {
    let Prepared { at, node_id, call } = prepare(call, received_at, default_node, limits)?;
    let call = match call {
        PreparedCall::TrackStats(StatsSample { room_id, room_name, key, stat }) => {
            Call::TrackStats { room_id, room_name, key, stat }
        }
        PreparedCall::Other(call) => *call,
    };
    Ok(Converted { at, node_id, call })
}

/// Converts one call as [`convert`] does, into a [`Prepared`].
///
/// # Errors
///
/// A message naming the field at fault.
pub fn prepare(
    call: v1::TelemetryCall,
    received_at: UnixMillis,
    default_node: &str,
    limits: &Limits,
) -> Result<Prepared, String> {
    let checker = Checker::new(limits, received_at);
    let at = match &call.at {
        None => received_at,
        Some(timestamp) => checker.time(|| "at".to_owned(), timestamp)?,
    };
    checker.id(|| "nodeId".to_owned(), &call.node_id)?;
    match &call.call {
        Some(Member::TrackStats(stats)) => checker.track_stats(stats)?,
        Some(_) => checker.walk("", &call)?,
        None => {}
    }
    let node_id = if call.node_id.is_empty() { default_node.to_owned() } else { call.node_id };
    let member = call.call.ok_or_else(|| {
        format!(
            "no member of `call` is set: set exactly one of {}",
            super::decode::MEMBERS.join(", ")
        )
    })?;
    let call = match member {
        Member::TrackStats(stats) => PreparedCall::TrackStats(stats_sample(stats)?),
        member => PreparedCall::Other(Box::new(member_to_call(member, at, &checker)?)),
    };
    Ok(Prepared { at, node_id, call })
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{field}: required"))
}

fn non_empty(value: &str, field: &str) -> Result<(), String> {
    if value.is_empty() { Err(format!("{field}: required")) } else { Ok(()) }
}

fn room(room: Option<lk::Room>, member: &str, checker: &Checker<'_>) -> Result<lk::Room, String> {
    let room = required(room, &format!("{member}.room"))?;
    non_empty(&room.sid, &format!("{member}.room.sid"))?;
    checker.creation_time(|| format!("{member}.room.creationTime"), room.creation_time)?;
    Ok(room)
}

fn participant(
    participant: Option<lk::ParticipantInfo>,
    member: &str,
) -> Result<lk::ParticipantInfo, String> {
    let participant = required(participant, &format!("{member}.participant"))?;
    non_empty(&participant.sid, &format!("{member}.participant.sid"))?;
    Ok(participant)
}

fn track(track: Option<lk::TrackInfo>, member: &str) -> Result<lk::TrackInfo, String> {
    let track = required(track, &format!("{member}.track"))?;
    non_empty(&track.sid, &format!("{member}.track.sid"))?;
    Ok(track)
}

fn guard(guard: String) -> String {
    if guard.is_empty() { DEFAULT_GUARD.to_owned() } else { guard }
}

fn egress(info: Option<lk::EgressInfo>, member: &str) -> Result<lk::EgressInfo, String> {
    let info = required(info, &format!("{member}.info"))?;
    non_empty(&info.egress_id, &format!("{member}.info.egressId"))?;
    Ok(info)
}

fn ingress(info: Option<lk::IngressInfo>, member: &str) -> Result<lk::IngressInfo, String> {
    let info = required(info, &format!("{member}.info"))?;
    non_empty(&info.ingress_id, &format!("{member}.info.ingressId"))?;
    Ok(info)
}

fn member_to_call(member: Member, at: UnixMillis, checker: &Checker<'_>) -> Result<Call, String> {
    Ok(match member {
        Member::TrackStats(stats) => {
            let StatsSample { room_id, room_name, key, stat } = stats_sample(stats)?;
            Call::TrackStats { room_id, room_name, key, stat }
        }
        Member::RoomStarted(call) => {
            let mut room = room(call.room, "roomStarted", checker)?;
            // ROOM_CREATED is stamped with the room's creation time; an SFU that does not set it
            // gets the call's time rather than 1970.
            if room.creation_time == 0 {
                room.creation_time = at.as_secs();
            }
            Call::RoomStarted { room }
        }
        Member::RoomEnded(call) => Call::RoomEnded { room: room(call.room, "roomEnded", checker)? },
        Member::ParticipantJoined(call) => Call::ParticipantJoined {
            room: room(call.room, "participantJoined", checker)?,
            participant: participant(call.participant, "participantJoined")?,
            client_info: call.client_info,
            client_meta: call.client_meta,
            should_send_event: call.should_send_event.unwrap_or(true),
            guard: guard(call.guard),
        },
        Member::ParticipantActive(call) => Call::ParticipantActive {
            room: room(call.room, "participantActive", checker)?,
            participant: participant(call.participant, "participantActive")?,
            client_meta: call.client_meta,
            is_migration: call.is_migration,
            guard: guard(call.guard),
        },
        Member::ParticipantResumed(call) => Call::ParticipantResumed {
            room: room(call.room, "participantResumed", checker)?,
            participant: participant(call.participant, "participantResumed")?,
            node_id: call.node_id,
            reason: call.reason,
            guard: guard(call.guard),
        },
        Member::ParticipantLeft(call) => Call::ParticipantLeft {
            room: room(call.room, "participantLeft", checker)?,
            participant: participant(call.participant, "participantLeft")?,
            should_send_event: call.should_send_event.unwrap_or(true),
            guard: guard(call.guard),
        },
        Member::TrackPublishRequested(call) => {
            non_empty(&call.participant_id, "trackPublishRequested.participantId")?;
            Call::TrackPublishRequested {
                room: room(call.room, "trackPublishRequested", checker)?,
                track: track(call.track, "trackPublishRequested")?,
                participant_id: call.participant_id,
                identity: call.identity,
                should_send_event: call.should_send_event.unwrap_or(true),
            }
        }
        Member::TrackPublished(call) => {
            non_empty(&call.participant_id, "trackPublished.participantId")?;
            Call::TrackPublished {
                room: room(call.room, "trackPublished", checker)?,
                track: track(call.track, "trackPublished")?,
                participant_id: call.participant_id,
                identity: call.identity,
                should_send_event: call.should_send_event.unwrap_or(true),
            }
        }
        Member::TrackUnpublished(call) => {
            non_empty(&call.participant_id, "trackUnpublished.participantId")?;
            Call::TrackUnpublished {
                room: room(call.room, "trackUnpublished", checker)?,
                track: track(call.track, "trackUnpublished")?,
                participant_id: call.participant_id,
                identity: call.identity,
                was_published_locally: call.was_published_locally.unwrap_or(true),
                should_send_event: call.should_send_event.unwrap_or(true),
            }
        }
        Member::TrackSubscribeRequested(call) => {
            let (room, participant_id, track) =
                track_call(call, "trackSubscribeRequested", checker)?;
            Call::TrackSubscribeRequested { room, participant_id, track }
        }
        Member::TrackSubscribed(call) => {
            non_empty(&call.participant_id, "trackSubscribed.participantId")?;
            Call::TrackSubscribed {
                room: room(call.room, "trackSubscribed", checker)?,
                track: track(call.track, "trackSubscribed")?,
                publisher: call.publisher.unwrap_or_default(),
                participant_id: call.participant_id,
                should_send_event: call.should_send_event.unwrap_or(true),
            }
        }
        Member::TrackUnsubscribed(call) => {
            non_empty(&call.participant_id, "trackUnsubscribed.participantId")?;
            Call::TrackUnsubscribed {
                room: room(call.room, "trackUnsubscribed", checker)?,
                track: track(call.track, "trackUnsubscribed")?,
                participant_id: call.participant_id,
                should_send_event: call.should_send_event.unwrap_or(true),
            }
        }
        Member::TrackSubscribeFailed(call) => {
            non_empty(&call.participant_id, "trackSubscribeFailed.participantId")?;
            non_empty(&call.track_id, "trackSubscribeFailed.trackId")?;
            Call::TrackSubscribeFailed {
                room: room(call.room, "trackSubscribeFailed", checker)?,
                participant_id: call.participant_id,
                track_id: call.track_id,
                error: call.error,
                is_user_error: call.is_user_error,
            }
        }
        Member::TrackMuted(call) => {
            let (room, participant_id, track) = track_call(call, "trackMuted", checker)?;
            Call::TrackMuted { room, participant_id, track }
        }
        Member::TrackUnmuted(call) => {
            let (room, participant_id, track) = track_call(call, "trackUnmuted", checker)?;
            Call::TrackUnmuted { room, participant_id, track }
        }
        Member::TrackPublishedUpdate(call) => {
            let (room, participant_id, track) = track_call(call, "trackPublishedUpdate", checker)?;
            Call::TrackPublishedUpdate { room, participant_id, track }
        }
        Member::TrackMaxSubscribedVideoQuality(call) => {
            non_empty(&call.participant_id, "trackMaxSubscribedVideoQuality.participantId")?;
            Call::TrackMaxSubscribedVideoQuality {
                room: room(call.room, "trackMaxSubscribedVideoQuality", checker)?,
                track: track(call.track, "trackMaxSubscribedVideoQuality")?,
                participant_id: call.participant_id,
                mime: call.mime,
                max_quality: call.max_quality,
            }
        }
        Member::TrackPublishRtpStats(call) => {
            non_empty(&call.participant_id, "trackPublishRtpStats.participantId")?;
            non_empty(&call.track_id, "trackPublishRtpStats.trackId")?;
            Call::TrackPublishRtpStats {
                room: room(call.room, "trackPublishRtpStats", checker)?,
                stats: required(call.stats, "trackPublishRtpStats.stats")?,
                participant_id: call.participant_id,
                track_id: call.track_id,
                mime: call.mime,
                layer: call.layer,
            }
        }
        Member::TrackSubscribeRtpStats(call) => {
            non_empty(&call.participant_id, "trackSubscribeRtpStats.participantId")?;
            non_empty(&call.track_id, "trackSubscribeRtpStats.trackId")?;
            Call::TrackSubscribeRtpStats {
                room: room(call.room, "trackSubscribeRtpStats", checker)?,
                stats: required(call.stats, "trackSubscribeRtpStats.stats")?,
                participant_id: call.participant_id,
                track_id: call.track_id,
                mime: call.mime,
            }
        }
        Member::EgressStarted(call) => {
            Call::EgressStarted { info: egress(call.info, "egressStarted")? }
        }
        Member::EgressUpdated(call) => {
            Call::EgressUpdated { info: egress(call.info, "egressUpdated")? }
        }
        Member::EgressEnded(call) => Call::EgressEnded { info: egress(call.info, "egressEnded")? },
        Member::IngressCreated(call) => {
            Call::IngressCreated { info: ingress(call.info, "ingressCreated")? }
        }
        Member::IngressDeleted(call) => {
            Call::IngressDeleted { info: ingress(call.info, "ingressDeleted")? }
        }
        Member::IngressStarted(call) => {
            Call::IngressStarted { info: ingress(call.info, "ingressStarted")? }
        }
        Member::IngressUpdated(call) => {
            Call::IngressUpdated { info: ingress(call.info, "ingressUpdated")? }
        }
        Member::IngressEnded(call) => {
            Call::IngressEnded { info: ingress(call.info, "ingressEnded")? }
        }
        Member::LocalRoomState(call) => Call::LocalRoomState {
            node_rooms: required(call.node_rooms, "localRoomState.nodeRooms")?,
        },
        Member::Report(call) => Call::Report { report: required(call.report, "report.report")? },
        Member::ApiCall(call) => Call::ApiCall { info: required(call.info, "apiCall.info")? },
    })
}

fn track_call(
    call: v1::TrackCall,
    member: &str,
    checker: &Checker<'_>,
) -> Result<(lk::Room, String, lk::TrackInfo), String> {
    non_empty(&call.participant_id, &format!("{member}.participantId"))?;
    Ok((room(call.room, member, checker)?, call.participant_id, track(call.track, member)?))
}

fn stats_sample(stats: v1::TrackStatsCall) -> Result<StatsSample, String> {
    non_empty(&stats.room_id, "trackStats.roomId")?;
    let key = required(stats.key, "trackStats.key")?;
    non_empty(&key.participant_id, "trackStats.key.participantId")?;
    non_empty(&key.track_id, "trackStats.key.trackId")?;
    let direction = Direction::from_stream_type(key.stream_type)
        .ok_or_else(|| format!("trackStats.key.streamType: unknown value {}", key.stream_type))?;
    let stat = required(stats.stat, "trackStats.stat")?;
    Ok(StatsSample {
        room_id: stats.room_id,
        room_name: stats.room_name,
        key: StatsKey {
            country: key.country,
            stream_type: direction,
            participant_id: key.participant_id,
            track_id: key.track_id,
            track_source: key.track_source,
            track_type: key.track_type,
            track: key.track,
        },
        stat,
    })
}
