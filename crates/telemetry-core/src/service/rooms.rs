//! Room calls: `RoomStarted` and `RoomEnded` become LiveKit's `room_started` and `room_finished`
//! webhooks and `ROOM_CREATED`/`ROOM_ENDED` events, and keep the open rooms behind
//! `livekit_room_total` and `livekit_room_duration_seconds`.

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::call::Call;
use crate::events::{self, names};
use crate::service::{CallContext, Mapped, OpenRoom};
use crate::time::UnixMillis;

/// Maps a room call.
pub(super) fn map(context: &mut CallContext<'_>, call: Call) -> Mapped {
    match call {
        Call::RoomStarted { room } => started(context, room),
        Call::RoomEnded { room } => ended(context, room),
        call => unreachable!("`{}` is not a room call", call.method_name()),
    }
}

fn started(context: &mut CallContext<'_>, room: lk::Room) -> Mapped {
    let at = context.at;
    let open = &mut context.open_rooms;
    if !open.by_sid.contains_key(&room.sid) {
        if open.by_sid.len() < context.inner.config.limits.max_open_rooms {
            let open_room =
                OpenRoom { node: context.node_id, started: at, name: room.name.as_str().into() };
            open.by_sid.insert(room.sid.clone(), open_room);
            context.metrics.rooms += 1;
        } else {
            open.refused += 1;
        }
    }
    let webhook =
        lk::WebhookEvent { room: Some(room.clone()), ..events::webhook(names::ROOM_STARTED, at) };
    // LiveKit stamps ROOM_CREATED with the room's creation time, and sets no room id.
    // A creation time no timestamp can hold (outside years 1 to 9999) stamps it with
    // the call's time instead: the event must stay writable as JSON.
    let created = pbjson_types::Timestamp { seconds: room.creation_time, nanos: 0 };
    let created = match UnixMillis::from_timestamp(&created) {
        Some(_) => created,
        None => at.to_timestamp(),
    };
    let event = lk::AnalyticsEvent {
        timestamp: Some(created),
        room: Some(room),
        ..events::bare_event(Type::RoomCreated, at)
    };
    (Some(webhook), Some(event))
}

fn ended(context: &mut CallContext<'_>, room: lk::Room) -> Mapped {
    let at = context.at;
    if let Some(OpenRoom { started, .. }) = context.open_rooms.by_sid.remove(&room.sid) {
        context.metrics.rooms -= 1;
        let start = if room.creation_time > 0 {
            UnixMillis::from_secs(room.creation_time)
        } else {
            started
        };
        context.metrics.observe_room_duration(at.millis_since(start).max(0) as f64 / 1000.0);
    }
    let webhook =
        lk::WebhookEvent { room: Some(room.clone()), ..events::webhook(names::ROOM_FINISHED, at) };
    let event = lk::AnalyticsEvent {
        room_id: room.sid.clone(),
        room: Some(room),
        ..events::bare_event(Type::RoomEnded, at)
    };
    (Some(webhook), Some(event))
}
