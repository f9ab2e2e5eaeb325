//! Track calls: publication, subscription, mutes, quality and RTP stats become `TRACK_*` events
//! and the `track_published` and `track_unpublished` webhooks, and keep LiveKit's track gauges and
//! publish and subscribe counters.

use livekit_protocol as lk;
use lk::AnalyticsEventType as Type;

use crate::call::Call;
use crate::events::{self, names};
use crate::keys::Direction;
use crate::metrics::track_kind_index;
use crate::service::{CallContext, Mapped};

/// Maps a track call.
pub(super) fn map(context: &mut CallContext<'_>, call: Call) -> Mapped {
    quality(context, &call);
    let at = context.at;
    let metrics = &mut *context.metrics;
    match call {
        Call::TrackPublishRequested {
            room,
            participant_id,
            identity,
            track,
            should_send_event,
        } => {
            metrics.publish_attempts[track_kind_index(track.r#type)] += 1;
            let event = should_send_event.then(|| lk::AnalyticsEvent {
                participant: Some(identity_only(&participant_id, &identity)),
                ..events::track_event(
                    Type::TrackPublishRequested,
                    &room,
                    &participant_id,
                    track,
                    at,
                )
            });
            (None, event)
        }
        Call::TrackPublished { room, participant_id, identity, track, should_send_event } => {
            let kind = track_kind_index(track.r#type);
            metrics.tracks_published[kind] += 1;
            metrics.publish_successes[kind] += 1;
            if !should_send_event {
                return (None, None);
            }
            let webhook = lk::WebhookEvent {
                room: Some(webhook_room(context, &room)),
                participant: Some(identity_only(&participant_id, &identity)),
                track: Some(track.clone()),
                ..events::webhook(names::TRACK_PUBLISHED, at)
            };
            let event = lk::AnalyticsEvent {
                participant: Some(identity_only(&participant_id, &identity)),
                ..events::track_event(Type::TrackPublished, &room, &participant_id, track, at)
            };
            (Some(webhook), Some(event))
        }
        Call::TrackUnpublished {
            room,
            participant_id,
            identity,
            track,
            was_published_locally,
            should_send_event,
        } => {
            if was_published_locally {
                metrics.tracks_published[track_kind_index(track.r#type)] -= 1;
            }
            if !should_send_event {
                return (None, None);
            }
            let webhook = lk::WebhookEvent {
                room: Some(webhook_room(context, &room)),
                participant: Some(identity_only(&participant_id, &identity)),
                track: Some(track.clone()),
                ..events::webhook(names::TRACK_UNPUBLISHED, at)
            };
            // The analytics event keeps participant `{sid}` only.
            let event =
                events::track_event(Type::TrackUnpublished, &room, &participant_id, track, at);
            (Some(webhook), Some(event))
        }
        Call::TrackSubscribeRequested { room, participant_id, track } => {
            metrics.subscribe_attempts += 1;
            let event = events::track_event(
                Type::TrackSubscribeRequested,
                &room,
                &participant_id,
                track,
                at,
            );
            (None, Some(event))
        }
        Call::TrackSubscribed { room, participant_id, track, publisher, should_send_event } => {
            metrics.tracks_subscribed[track_kind_index(track.r#type)] += 1;
            metrics.subscribe_successes += 1;
            let event = should_send_event.then(|| lk::AnalyticsEvent {
                publisher: Some(identity_only(&publisher.sid, &publisher.identity)),
                ..events::track_event(Type::TrackSubscribed, &room, &participant_id, track, at)
            });
            (None, event)
        }
        Call::TrackUnsubscribed { room, participant_id, track, should_send_event } => {
            metrics.tracks_subscribed[track_kind_index(track.r#type)] -= 1;
            let event = should_send_event.then(|| {
                events::track_event(Type::TrackUnsubscribed, &room, &participant_id, track, at)
            });
            (None, event)
        }
        Call::TrackSubscribeFailed { room, participant_id, track_id, error, is_user_error: _ } => {
            metrics.subscribe_failure(&error);
            let track = lk::TrackInfo { sid: track_id, ..Default::default() };
            let event = lk::AnalyticsEvent {
                error,
                ..events::track_event(Type::TrackSubscribeFailed, &room, &participant_id, track, at)
            };
            (None, Some(event))
        }
        Call::TrackMuted { room, participant_id, track } => {
            (None, Some(events::track_event(Type::TrackMuted, &room, &participant_id, track, at)))
        }
        Call::TrackUnmuted { room, participant_id, track } => {
            (None, Some(events::track_event(Type::TrackUnmuted, &room, &participant_id, track, at)))
        }
        Call::TrackPublishedUpdate { room, participant_id, track } => {
            let event =
                events::track_event(Type::TrackPublishedUpdate, &room, &participant_id, track, at);
            (None, Some(event))
        }
        Call::TrackMaxSubscribedVideoQuality { room, participant_id, track, mime, max_quality } => {
            let event = lk::AnalyticsEvent {
                max_subscribed_video_quality: max_quality,
                mime,
                ..events::track_event(
                    Type::TrackMaxSubscribedVideoQuality,
                    &room,
                    &participant_id,
                    track,
                    at,
                )
            };
            (None, Some(event))
        }
        Call::TrackPublishRtpStats { room, participant_id, track_id, mime, layer, stats } => {
            let event = lk::AnalyticsEvent {
                video_layer: layer,
                ..events::rtp_stats_event(
                    Type::TrackPublishStats,
                    &room,
                    &participant_id,
                    &track_id,
                    &mime,
                    stats,
                    at,
                )
            };
            (None, Some(event))
        }
        Call::TrackSubscribeRtpStats { room, participant_id, track_id, mime, stats } => {
            let event = events::rtp_stats_event(
                Type::TrackSubscribeStats,
                &room,
                &participant_id,
                &track_id,
                &mime,
                stats,
                at,
            );
            (None, Some(event))
        }
        call => unreachable!("`{}` is not a track call", call.method_name()),
    }
}

/// The room of a track webhook: whole if `full_room_in_track_webhooks`, else its sid and name.
fn webhook_room(context: &CallContext<'_>, room: &lk::Room) -> lk::Room {
    if context.inner.config.full_room_in_track_webhooks {
        room.clone()
    } else {
        events::minimal_room(room)
    }
}

/// A participant with its sid and identity only.
fn identity_only(sid: &str, identity: &str) -> lk::ParticipantInfo {
    lk::ParticipantInfo { sid: sid.to_owned(), identity: identity.to_owned(), ..Default::default() }
}

/// What track calls change in call quality: a published media track is watched for silence
/// (`no_media` without samples); an unpublished track's upstream issues and an unsubscribed
/// track's downstream issues end (pushed before the call's own outputs); a mute keeps
/// `no_media` from opening and ends an open one.
fn quality(context: &CallContext<'_>, call: &Call) {
    /// What the call does to the worker's track.
    enum Change {
        Publish { muted: bool },
        Unpublish,
        Unsubscribe,
        Mute(bool),
    }
    let (room, participant_id, track_id, what) = match call {
        Call::TrackPublished { room, participant_id, track, .. }
            if track.r#type == lk::TrackType::Audio as i32
                || track.r#type == lk::TrackType::Video as i32 =>
        {
            (room, participant_id, &track.sid, Change::Publish { muted: track.muted })
        }
        Call::TrackUnpublished { room, participant_id, track, .. } => {
            (room, participant_id, &track.sid, Change::Unpublish)
        }
        Call::TrackUnsubscribed { room, participant_id, track, .. } => {
            (room, participant_id, &track.sid, Change::Unsubscribe)
        }
        Call::TrackMuted { room, participant_id, track } => {
            (room, participant_id, &track.sid, Change::Mute(true))
        }
        Call::TrackUnmuted { room, participant_id, track } => {
            (room, participant_id, &track.sid, Change::Mute(false))
        }
        _ => return,
    };
    let inner = context.inner;
    let hash = inner.workers.hash(&room.sid, participant_id);
    inner.workers.with_worker(hash, &room.sid, participant_id, |worker| {
        let Some(worker) = worker else { return };
        let mut worker = worker.lock();
        let mut changes = Vec::new();
        match what {
            Change::Publish { muted } => {
                if inner.quality.thresholds.enabled {
                    worker.publish(
                        track_id,
                        muted,
                        context.at,
                        context.node_id,
                        inner.config.limits.max_tracks_per_participant,
                        inner.workers.hasher(),
                    );
                }
            }
            Change::Unpublish | Change::Unsubscribe => {
                let direction = if matches!(what, Change::Unpublish) {
                    worker.unpublish(track_id);
                    Direction::Upstream
                } else {
                    Direction::Downstream
                };
                worker.close_issues(
                    context.at,
                    &inner.quality,
                    |d, id| d == direction && id == track_id,
                    &mut changes,
                );
            }
            Change::Mute(muted) => {
                worker.set_muted(track_id, muted, context.at, &inner.quality, &mut changes);
            }
        }
        inner.push_quality(changes);
    });
}
