//! Participant calls: joins, activation, resumes and leaves open and close the participant's stats
//! worker (keeping `livekit_participant_total` and `livekit_participant_join_total`), and become
//! `PARTICIPANT_*` events and the `participant_joined`, `participant_left` and
//! `participant_connection_aborted` webhooks.

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::call::Call;
use crate::events::{self, names};
use crate::service::{CallContext, Mapped};
use crate::workers::Obtained;

/// Maps a participant call.
pub(super) fn map(context: &mut CallContext<'_>, call: Call) -> Mapped {
    match call {
        Call::ParticipantJoined {
            room,
            participant,
            client_info,
            client_meta,
            should_send_event,
            guard,
        } => {
            if obtain(context, &room, &participant, &guard, false) == Obtained::Created {
                context.metrics.join_rtc_connected += 1;
            }
            let event = should_send_event.then(|| lk::AnalyticsEvent {
                client_info,
                client_meta,
                ..events::participant_event(
                    Type::ParticipantJoined,
                    &room,
                    &participant,
                    context.at,
                )
            });
            (None, event)
        }
        Call::ParticipantActive { room, participant, client_meta, is_migration, guard } => {
            let at = context.at;
            // `participant_joined` goes out on ACTIVE, not on the signalling join.
            let webhook = (!is_migration).then(|| lk::WebhookEvent {
                room: Some(room.clone()),
                participant: Some(participant.clone()),
                ..events::webhook(names::PARTICIPANT_JOINED, at)
            });
            obtain(context, &room, &participant, &guard, true);
            context.metrics.join_rtc_active += 1;
            let event = lk::AnalyticsEvent {
                client_meta,
                ..events::participant_event(Type::ParticipantActive, &room, &participant, at)
            };
            (webhook, Some(event))
        }
        Call::ParticipantResumed { room, participant, node_id, reason, guard } => {
            obtain(context, &room, &participant, &guard, false);
            let event = lk::AnalyticsEvent {
                client_meta: Some(lk::AnalyticsClientMeta {
                    node: node_id,
                    reconnect_reason: reason,
                    ..Default::default()
                }),
                ..events::participant_event(
                    Type::ParticipantResumed,
                    &room,
                    &participant,
                    context.at,
                )
            };
            (None, Some(event))
        }
        Call::ParticipantLeft { room, participant, should_send_event, guard } => {
            left(context, room, participant, should_send_event, &guard)
        }
        call => unreachable!("`{}` is not a participant call", call.method_name()),
    }
}

/// Takes `guard` on the participant's stats worker, creating the worker if needed (counted in
/// `livekit_participant_total`), and marks it connected if `connect`.
fn obtain(
    context: &mut CallContext<'_>,
    room: &lk::Room,
    participant: &lk::ParticipantInfo,
    guard: &str,
    connect: bool,
) -> Obtained {
    let inner = context.inner;
    let node = &context.node;
    let worker_state = &mut context.worker_state;
    let obtained = inner.workers.get_or_create(
        &room.sid,
        &room.name,
        &participant.sid,
        &participant.identity,
        guard,
        context.at,
        context.node_id,
        |worker| {
            if connect {
                worker.set_connected();
            }
            *worker_state = Some(worker.state(node.clone()));
        },
    );
    if obtained == Obtained::Created {
        context.metrics.participants += 1;
    }
    obtained
}

/// Releases `guard` of the participant's worker; a leave of a participant never connected (or
/// without a worker) is a connection aborted.
fn left(
    context: &mut CallContext<'_>,
    room: lk::Room,
    participant: lk::ParticipantInfo,
    should_send_event: bool,
    guard: &str,
) -> Mapped {
    let inner = context.inner;
    let at = context.at;
    let worker_state = &mut context.worker_state;
    let hash = inner.workers.hash(&room.sid, &participant.sid);
    let (connected, closed) =
        inner.workers.with_worker(hash, &room.sid, &participant.sid, |worker| match worker {
            Some(worker) => {
                let mut worker = worker.lock();
                let connected = worker.is_connected();
                let closed = worker.close(guard, at);
                if closed {
                    // The participant's issues end as it leaves, before its leave's outputs.
                    let mut changes = Vec::new();
                    worker.close_issues(at, &inner.quality, |_, _| true, &mut changes);
                    inner.push_quality(changes);
                }
                let owner = inner.node_name(worker.node());
                *worker_state = Some(worker.state(owner));
                (connected, closed)
            }
            // No worker counts as never connected: aborted.
            None => (false, false),
        });
    if closed {
        context.metrics.participants -= 1;
    }
    if !should_send_event {
        return (None, None);
    }
    let (name, event_type) = if connected {
        (names::PARTICIPANT_LEFT, Type::ParticipantLeft)
    } else {
        (names::PARTICIPANT_CONNECTION_ABORTED, Type::ParticipantConnectionAborted)
    };
    let webhook = lk::WebhookEvent {
        room: Some(room.clone()),
        participant: Some(participant.clone()),
        ..events::webhook(name, at)
    };
    (Some(webhook), Some(events::participant_event(event_type, &room, &participant, at)))
}
