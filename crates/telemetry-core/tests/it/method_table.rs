//! One test per row of the method table (reference §2.4) and per flag: which analytics event,
//! which webhook with which payload, and which metric each call produces.

use telemetry_core::ids::is_valid_id;
use telemetry_core::proto as lk;
use telemetry_core::{Call, CoreConfig, DEFAULT_GUARD, Output, webhook_names as names};

use crate::harness::{Harness, T0, participant, room, video_track};

type Pair = (Option<lk::WebhookEvent>, Option<lk::AnalyticsEvent>);

fn only_call(harness: &Harness) -> Pair {
    let mut calls = harness.calls();
    assert_eq!(calls.len(), 1, "exactly one call output");
    calls.remove(0)
}

fn event_type(event: &lk::AnalyticsEvent) -> lk::AnalyticsEventType {
    lk::AnalyticsEventType::try_from(event.r#type).expect("known type")
}

fn minimal_room() -> lk::Room {
    lk::Room { sid: "RoomSid".into(), name: "RoomName".into(), ..Default::default() }
}

fn apply(harness: &Harness, call: Call) {
    harness.service.apply(harness.meta(), call).expect("lifecycle calls never fail");
}

#[test]
fn ids_and_stamps_follow_livekit() {
    let harness = Harness::new();
    harness.service.room_started(room());
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    let event = event.expect("event");
    assert!(is_valid_id(&webhook.id, "EV_"), "{}", webhook.id);
    assert_eq!(webhook.created_at, T0.as_secs(), "created_at in seconds");
    assert!(is_valid_id(&event.id, "AE_"), "{}", event.id);
    assert_eq!(event.node_id, "node-a");
}

#[test]
fn room_started_sends_full_room_and_room_created_at_creation_time() {
    let harness = Harness::new();
    harness.service.room_started(room());
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::ROOM_STARTED);
    assert_eq!(webhook.room.as_ref(), Some(&room()), "the full room");
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::RoomCreated);
    assert_eq!(
        event.timestamp,
        Some(pbjson_types::Timestamp { seconds: room().creation_time, nanos: 0 }),
        "not now"
    );
    assert_eq!(event.room.as_ref(), Some(&room()));
    assert_eq!(event.room_id, "", "ROOM_CREATED sets no room id");
    assert_eq!(harness.service.metrics().value("livekit_room_total", &[]), 1.0);
}

/// Found by the `ingest_json` fuzz target: a `roomStarted` whose `creationTime` is
/// 1700000009275032 (milliseconds times a thousand, read as seconds) gave ROOM_CREATED a
/// timestamp past year 9999, which the protobuf JSON mapping cannot write; the service's
/// pipeline panicked storing the event. Such a creation time stamps the event with the call's
/// time; the webhook keeps the room as sent.
#[test]
fn room_created_at_a_creation_time_no_timestamp_can_hold_is_stamped_now() {
    for creation_time in [1_700_000_009_275_032, i64::MAX, -62_135_596_801] {
        let harness = Harness::new();
        let room = lk::Room { creation_time, ..room() };
        harness.service.room_started(room.clone());
        let (webhook, event) = only_call(&harness);
        let event = event.expect("event");
        assert_eq!(event.timestamp, Some(T0.to_timestamp()), "{creation_time}");
        serde_json::to_string(&event).expect("the event is writable as JSON");
        assert_eq!(webhook.expect("webhook").room, Some(room));
    }
}

#[test]
fn room_ended_sends_room_finished_and_room_ended_now() {
    let harness = Harness::new();
    harness.service.room_started(room());
    harness.outputs();
    harness.advance(std::time::Duration::from_secs(60));
    harness.service.room_ended(room());
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::ROOM_FINISHED);
    assert_eq!(webhook.room.as_ref(), Some(&room()));
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::RoomEnded);
    assert_eq!(event.timestamp, Some(harness.now().to_timestamp()));
    assert_eq!(event.room_id, "RoomSid");
    let metrics = harness.service.metrics();
    assert_eq!(metrics.value("livekit_room_total", &[]), 0.0);
    assert_eq!(metrics.value("livekit_room_duration_seconds", &[]), 1.0, "one duration observed");
}

#[test]
fn participant_joined_sends_no_webhook_and_its_event_only_when_asked() {
    let harness = Harness::new();
    harness.service.participant_joined(
        room(),
        participant("PA_1"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none(), "joined is sent on active, not on the signalling join");
    assert_eq!(event_type(&event.expect("event")), lk::AnalyticsEventType::ParticipantJoined);

    harness.service.participant_joined(
        room(),
        participant("PA_2"),
        None,
        None,
        false,
        DEFAULT_GUARD,
    );
    assert!(harness.calls().is_empty(), "shouldSendEvent=false: nothing");
    let metrics = harness.service.metrics();
    assert_eq!(metrics.value("livekit_participant_total", &[]), 2.0, "both created a worker");
    assert_eq!(metrics.value("livekit_participant_join_total", &[("state", "rtc_connected")]), 2.0);
}

#[test]
fn participant_active_sends_participant_joined_unless_migrating() {
    let harness = Harness::new();
    let meta = lk::AnalyticsClientMeta {
        client_connect_time: 120,
        connection_type: "udp".into(),
        ..Default::default()
    };
    harness.service.participant_active(
        room(),
        participant("PA_1"),
        Some(meta.clone()),
        false,
        DEFAULT_GUARD,
    );
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::PARTICIPANT_JOINED);
    assert_eq!(webhook.room.as_ref(), Some(&room()));
    assert_eq!(webhook.participant.as_ref(), Some(&participant("PA_1")));
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::ParticipantActive);
    assert_eq!(event.client_meta.as_ref(), Some(&meta));

    harness.service.participant_active(room(), participant("PA_2"), None, true, DEFAULT_GUARD);
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none(), "a migration sends no participant_joined");
    assert_eq!(
        event_type(&event.expect("event")),
        lk::AnalyticsEventType::ParticipantActive,
        "but always the event"
    );
    assert_eq!(
        harness
            .service
            .metrics()
            .value("livekit_participant_join_total", &[("state", "rtc_active")]),
        2.0
    );
}

#[test]
fn participant_resumed_sends_node_and_reason_and_no_webhook() {
    let harness = Harness::new();
    harness.service.participant_resumed(
        room(),
        participant("PA_1"),
        "node-b",
        lk::ReconnectReason::RrSubscriberFailed,
        DEFAULT_GUARD,
    );
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none());
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::ParticipantResumed);
    assert_eq!(
        event.client_meta,
        Some(lk::AnalyticsClientMeta {
            node: "node-b".into(),
            reconnect_reason: lk::ReconnectReason::RrSubscriberFailed as i32,
            ..Default::default()
        })
    );
    assert_eq!(event.participant_id, "PA_1");
    assert_eq!(harness.service.worker_count(), 1, "resume creates a missing worker");
}

#[test]
fn participant_left_is_left_when_connected_and_aborted_otherwise() {
    let harness = Harness::new();
    harness.service.participant_active(room(), participant("PA_1"), None, false, DEFAULT_GUARD);
    harness.service.participant_joined(
        room(),
        participant("PA_2"),
        None,
        None,
        true,
        DEFAULT_GUARD,
    );
    harness.outputs();

    harness.service.participant_left(room(), participant("PA_1"), true, DEFAULT_GUARD);
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::PARTICIPANT_LEFT);
    assert_eq!(webhook.room.as_ref(), Some(&room()), "the full room");
    assert_eq!(webhook.participant.as_ref(), Some(&participant("PA_1")));
    assert_eq!(event_type(&event.expect("event")), lk::AnalyticsEventType::ParticipantLeft);

    harness.service.participant_left(room(), participant("PA_2"), true, DEFAULT_GUARD);
    let (webhook, event) = only_call(&harness);
    assert_eq!(
        webhook.expect("webhook").event,
        names::PARTICIPANT_CONNECTION_ABORTED,
        "joined, never active"
    );
    assert_eq!(
        event_type(&event.expect("event")),
        lk::AnalyticsEventType::ParticipantConnectionAborted
    );

    harness.service.participant_left(room(), participant("PA_unknown"), true, DEFAULT_GUARD);
    let (webhook, _) = only_call(&harness);
    assert_eq!(
        webhook.expect("webhook").event,
        names::PARTICIPANT_CONNECTION_ABORTED,
        "no worker counts as aborted"
    );

    harness.service.participant_left(room(), participant("PA_1"), false, DEFAULT_GUARD);
    assert!(harness.calls().is_empty(), "shouldSendEvent=false: nothing");
}

#[test]
fn track_publish_requested_sends_an_event_with_sid_and_identity() {
    let harness = Harness::new();
    harness.service.track_publish_requested(room(), "PA_1", "alice", video_track("TR_1"), true);
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none());
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::TrackPublishRequested);
    assert_eq!(
        event.participant,
        Some(lk::ParticipantInfo {
            sid: "PA_1".into(),
            identity: "alice".into(),
            ..Default::default()
        })
    );
    assert_eq!(event.room.as_ref(), Some(&minimal_room()));
    assert_eq!(event.track_id, "TR_1");

    harness.service.track_publish_requested(room(), "PA_1", "alice", video_track("TR_2"), false);
    assert!(harness.calls().is_empty());
    assert_eq!(
        harness
            .service
            .metrics()
            .value("livekit_track_publish_counter", &[("kind", "VIDEO"), ("state", "attempt")]),
        2.0
    );
}

#[test]
fn track_published_sends_minimal_room_identity_and_full_track() {
    let harness = Harness::new();
    harness.service.track_published(room(), "PA_1", "alice", video_track("TR_1"), true);
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::TRACK_PUBLISHED);
    assert_eq!(webhook.room.as_ref(), Some(&minimal_room()));
    assert_eq!(
        webhook.participant,
        Some(lk::ParticipantInfo {
            sid: "PA_1".into(),
            identity: "alice".into(),
            ..Default::default()
        })
    );
    assert_eq!(webhook.track.as_ref(), Some(&video_track("TR_1")));
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::TrackPublished);
    assert_eq!(
        event.participant,
        Some(lk::ParticipantInfo {
            sid: "PA_1".into(),
            identity: "alice".into(),
            ..Default::default()
        })
    );
    assert_eq!(event.room.as_ref(), Some(&minimal_room()));

    harness.service.track_published(room(), "PA_1", "alice", video_track("TR_2"), false);
    assert!(harness.calls().is_empty(), "migrated tracks: nothing sent");
    let metrics = harness.service.metrics();
    assert_eq!(
        metrics.value("livekit_track_published_total", &[("kind", "VIDEO")]),
        2.0,
        "but always counted"
    );
    assert_eq!(
        metrics.value("livekit_track_publish_counter", &[("kind", "VIDEO"), ("state", "success")]),
        2.0
    );
}

#[test]
fn track_webhooks_carry_the_full_room_when_configured() {
    let harness = Harness::with_config(CoreConfig {
        full_room_in_track_webhooks: true,
        ..CoreConfig::default()
    });
    harness.service.track_published(room(), "PA_1", "alice", video_track("TR_1"), true);
    let (webhook, event) = only_call(&harness);
    assert_eq!(webhook.expect("webhook").room.as_ref(), Some(&room()));
    assert_eq!(
        event.expect("event").room.as_ref(),
        Some(&minimal_room()),
        "analytics track events stay minimal"
    );
}

#[test]
fn track_unpublished_webhook_has_identity_and_event_has_sid_only() {
    let harness = Harness::new();
    harness.service.track_published(room(), "PA_1", "alice", video_track("TR_1"), true);
    harness.service.track_published(room(), "PA_1", "alice", video_track("TR_2"), true);
    harness.outputs();
    harness.service.track_unpublished(room(), "PA_1", "alice", video_track("TR_1"), true, true);
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::TRACK_UNPUBLISHED);
    assert_eq!(
        webhook.participant,
        Some(lk::ParticipantInfo {
            sid: "PA_1".into(),
            identity: "alice".into(),
            ..Default::default()
        })
    );
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::TrackUnpublished);
    assert_eq!(
        event.participant,
        Some(lk::ParticipantInfo { sid: "PA_1".into(), ..Default::default() })
    );

    harness.service.track_unpublished(room(), "PA_1", "alice", video_track("TR_2"), false, false);
    assert!(harness.calls().is_empty(), "expected to resume: nothing sent");
    assert_eq!(
        harness.service.metrics().value("livekit_track_published_total", &[("kind", "VIDEO")]),
        1.0,
        "only a locally published track leaves the gauge"
    );
}

#[test]
fn subscribe_requested_subscribed_unsubscribed_and_failed() {
    let harness = Harness::new();
    harness.service.track_subscribe_requested(room(), "PA_2", video_track("TR_1"));
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none());
    assert_eq!(event_type(&event.expect("event")), lk::AnalyticsEventType::TrackSubscribeRequested);

    harness.service.track_subscribed(
        room(),
        "PA_2",
        video_track("TR_1"),
        participant("PA_1"),
        false,
    );
    assert!(harness.calls().is_empty(), "a re-bind sends nothing");
    harness.service.track_unsubscribed(room(), "PA_2", video_track("TR_1"), true);
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none(), "there is no track_unsubscribed webhook");
    assert_eq!(event_type(&event.expect("event")), lk::AnalyticsEventType::TrackUnsubscribed);
    harness.service.track_unsubscribed(room(), "PA_2", video_track("TR_1"), false);
    assert!(harness.calls().is_empty());

    harness.service.track_subscribe_failed(room(), "PA_2", "TR_9", "track not found", true);
    let (webhook, event) = only_call(&harness);
    assert!(webhook.is_none());
    let event = event.expect("event");
    assert_eq!(event_type(&event), lk::AnalyticsEventType::TrackSubscribeFailed);
    assert_eq!(event.track, Some(lk::TrackInfo { sid: "TR_9".into(), ..Default::default() }));
    assert_eq!(event.track_id, "TR_9");
    assert_eq!(event.error, "track not found");

    let metrics = harness.service.metrics();
    assert_eq!(metrics.value("livekit_track_subscribe_counter", &[("state", "attempt")]), 1.0);
    assert_eq!(metrics.value("livekit_track_subscribe_counter", &[("state", "success")]), 1.0);
    assert_eq!(
        metrics.value(
            "livekit_track_subscribe_counter",
            &[("state", "failure"), ("error", "track not found")]
        ),
        1.0
    );
    assert_eq!(
        metrics.value("livekit_track_subscribed_total", &[("kind", "VIDEO")]),
        -1.0,
        "1 subscribed, 2 unsubscribed"
    );
}

#[test]
fn mute_unmute_and_max_quality_send_events_only() {
    let harness = Harness::new();
    harness.service.track_muted(room(), "PA_1", video_track("TR_1"));
    harness.service.track_unmuted(room(), "PA_1", video_track("TR_1"));
    harness.service.track_max_subscribed_video_quality(
        room(),
        "PA_1",
        video_track("TR_1"),
        "video/VP8",
        lk::VideoQuality::Medium,
    );
    let calls = harness.calls();
    assert!(calls.iter().all(|(webhook, _)| webhook.is_none()));
    let events: Vec<lk::AnalyticsEvent> =
        calls.into_iter().map(|(_, event)| event.expect("event")).collect();
    assert_eq!(event_type(&events[0]), lk::AnalyticsEventType::TrackMuted);
    assert_eq!(event_type(&events[1]), lk::AnalyticsEventType::TrackUnmuted);
    assert_eq!(event_type(&events[2]), lk::AnalyticsEventType::TrackMaxSubscribedVideoQuality);
    assert_eq!(events[2].max_subscribed_video_quality, lk::VideoQuality::Medium as i32);
    assert_eq!(events[2].mime, "video/VP8");
    assert_eq!(
        events[0].participant,
        Some(lk::ParticipantInfo { sid: "PA_1".into(), ..Default::default() })
    );
}

#[test]
fn rtp_stats_events_have_ids_but_no_participant_or_track_objects() {
    let harness = Harness::new();
    let stats = lk::RtpStats { packets: 1000, bytes: 1_000_000, ..Default::default() };
    harness.service.track_publish_rtp_stats(room(), "PA_1", "TR_1", "video/VP8", 2, stats.clone());
    harness.service.track_subscribe_rtp_stats(room(), "PA_2", "TR_1", "video/VP8", stats.clone());
    let events = harness.events();
    let publish = &events[0];
    assert_eq!(event_type(publish), lk::AnalyticsEventType::TrackPublishStats);
    assert_eq!(publish.room.as_ref(), Some(&minimal_room()));
    assert_eq!(
        (publish.room_id.as_str(), publish.participant_id.as_str(), publish.track_id.as_str()),
        ("RoomSid", "PA_1", "TR_1")
    );
    assert_eq!((publish.mime.as_str(), publish.video_layer), ("video/VP8", 2));
    assert_eq!(publish.rtp_stats.as_ref(), Some(&stats));
    assert!(publish.participant.is_none() && publish.track.is_none());
    let subscribe = &events[1];
    assert_eq!(event_type(subscribe), lk::AnalyticsEventType::TrackSubscribeStats);
    assert_eq!(subscribe.video_layer, 0);
    assert!(subscribe.participant.is_none() && subscribe.track.is_none());
}

#[test]
fn egress_calls_send_webhook_and_event() {
    let harness = Harness::new();
    let info = lk::EgressInfo {
        egress_id: "EG_1".into(),
        room_id: "RoomSid".into(),
        room_name: "RoomName".into(),
        status: lk::EgressStatus::EgressActive as i32,
        ..Default::default()
    };
    harness.service.egress_started(info.clone());
    harness.service.egress_updated(info.clone());
    harness.service.egress_ended(info.clone());
    let calls = harness.calls();
    let expected = [
        (names::EGRESS_STARTED, lk::AnalyticsEventType::EgressStarted),
        (names::EGRESS_UPDATED, lk::AnalyticsEventType::EgressUpdated),
        (names::EGRESS_ENDED, lk::AnalyticsEventType::EgressEnded),
    ];
    for ((webhook, event), (name, event_kind)) in calls.into_iter().zip(expected) {
        let webhook = webhook.expect("webhook");
        assert_eq!(webhook.event, name);
        assert_eq!(webhook.room, Some(minimal_room()), "room from the egress: sid and name");
        assert_eq!(webhook.egress_info.as_ref(), Some(&info));
        assert_eq!(telemetry_core::webhook_resource_key(&webhook), "EG_1");
        let event = event.expect("event");
        assert_eq!(event_type(&event), event_kind);
        assert_eq!((event.egress_id.as_str(), event.room_id.as_str()), ("EG_1", "RoomSid"));
        assert_eq!(event.egress.as_ref(), Some(&info));
    }
}

#[test]
fn notify_egress_event_sends_only_the_webhook() {
    let harness = Harness::new();
    let info = lk::EgressInfo {
        room_id: "RoomSid".into(),
        room_name: "RoomName".into(),
        status: lk::EgressStatus::EgressFailed as i32,
        ..Default::default()
    };
    harness.service.notify_egress_event(names::EGRESS_ENDED, info);
    let (webhook, event) = only_call(&harness);
    let webhook = webhook.expect("webhook");
    assert_eq!(webhook.event, names::EGRESS_ENDED);
    assert_eq!(
        telemetry_core::webhook_resource_key(&webhook),
        "",
        "failed auto-egress: empty egress id"
    );
    assert!(event.is_none());
}

#[test]
fn ingress_calls_send_webhooks_only_on_start_and_end() {
    let harness = Harness::new();
    let info = lk::IngressInfo {
        ingress_id: "IN_1".into(),
        room_name: "RoomName".into(),
        enabled: Some(false),
        ..Default::default()
    };
    harness.service.ingress_created(info.clone());
    harness.service.ingress_started(info.clone());
    harness.service.ingress_updated(info.clone());
    harness.service.ingress_ended(info.clone());
    harness.service.ingress_deleted(info.clone());
    let calls = harness.calls();
    let expected = [
        (None, lk::AnalyticsEventType::IngressCreated),
        (Some(names::INGRESS_STARTED), lk::AnalyticsEventType::IngressStarted),
        (None, lk::AnalyticsEventType::IngressUpdated),
        (Some(names::INGRESS_ENDED), lk::AnalyticsEventType::IngressEnded),
        (None, lk::AnalyticsEventType::IngressDeleted),
    ];
    assert_eq!(calls.len(), 5);
    for ((webhook, event), (name, event_kind)) in calls.into_iter().zip(expected) {
        assert_eq!(webhook.as_ref().map(|w| w.event.as_str()), name);
        if let Some(webhook) = webhook {
            assert_eq!(
                webhook.room,
                Some(lk::Room { name: "RoomName".into(), ..Default::default() }),
                "room name only"
            );
            assert_eq!(webhook.ingress_info.as_ref(), Some(&info));
            let json = serde_json::to_string(&webhook).expect("json");
            assert!(json.contains(r#""enabled":false"#), "explicit presence survives: {json}");
        }
        let event = event.expect("event");
        assert_eq!(event_type(&event), event_kind);
        assert_eq!(event.ingress_id, "IN_1");
        assert_eq!(event.ingress.as_ref(), Some(&info));
    }
}

#[test]
fn local_room_state_stamps_node_sequence_and_time() {
    let harness = Harness::new();
    let rooms = lk::AnalyticsNodeRooms {
        node_id: "ignored".into(),
        rooms: vec![lk::AnalyticsRoom { id: "RoomSid".into(), ..Default::default() }],
        ..Default::default()
    };
    harness.service.local_room_state(rooms.clone());
    harness.service.local_room_state(rooms);
    let node_rooms: Vec<lk::AnalyticsNodeRooms> = harness
        .outputs()
        .into_iter()
        .filter_map(|o| match o.output {
            Output::NodeRooms(rooms) => Some(rooms),
            _ => None,
        })
        .collect();
    assert_eq!(node_rooms.len(), 2);
    assert_eq!((node_rooms[0].node_id.as_str(), node_rooms[0].sequence_number), ("node-a", 1));
    assert_eq!(node_rooms[1].sequence_number, 2);
    assert_eq!(node_rooms[0].timestamp, Some(harness.now().to_timestamp()));
    assert_eq!(node_rooms[0].rooms.len(), 1);
}

#[test]
fn report_api_call_and_webhook_send_their_events() {
    let harness = Harness::new();
    let report = lk::ReportInfo {
        message: Some(lk::report_info::Message::FeatureUsage(lk::FeatureUsageInfo {
            room_name: "RoomName".into(),
            ..Default::default()
        })),
    };
    let api_call = lk::ApiCallInfo {
        service: "RoomService".into(),
        method: "ListRooms".into(),
        status: 200,
        ..Default::default()
    };
    let webhook_info = lk::WebhookInfo {
        event_id: "EV_x".into(),
        event: "room_started".into(),
        http_status_code: 200,
        ..Default::default()
    };
    apply(&harness, Call::Report { report: report.clone() });
    apply(&harness, Call::ApiCall { info: api_call.clone() });
    apply(&harness, Call::Webhook { info: webhook_info.clone() });
    let calls = harness.calls();
    assert!(calls.iter().all(|(webhook, _)| webhook.is_none()));
    let events: Vec<_> = calls.into_iter().map(|(_, event)| event.expect("event")).collect();
    assert_eq!(event_type(&events[0]), lk::AnalyticsEventType::Report);
    assert_eq!(events[0].report.as_ref(), Some(&report));
    assert_eq!(event_type(&events[1]), lk::AnalyticsEventType::ApiCall);
    assert_eq!(events[1].api_call.as_ref(), Some(&api_call));
    assert_eq!(event_type(&events[2]), lk::AnalyticsEventType::Webhook);
    assert_eq!(events[2].webhook.as_ref(), Some(&webhook_info));
    assert!(events.iter().all(|e| e.timestamp == Some(harness.now().to_timestamp())));
}

#[test]
fn track_stats_counts_media_quality_only_for_media_keys() {
    let harness = Harness::new();
    let media = telemetry_core::StatsKey::for_track(
        "DE",
        telemetry_core::Direction::Downstream,
        "PA_1",
        "TR_1",
        lk::TrackSource::Camera,
        lk::TrackType::Video,
    );
    let data = telemetry_core::StatsKey::for_data(
        "DE",
        telemetry_core::Direction::Downstream,
        "PA_1",
        "TR_DTPA_1",
    );
    let sample = lk::AnalyticsStat {
        streams: vec![lk::AnalyticsStream {
            primary_packets: 90,
            padding_packets: 10,
            primary_bytes: 9000,
            retransmit_packets: 5,
            retransmit_bytes: 500,
            packets_lost: 2,
            rtt: 120,
            jitter: 20_000,
            nacks: 3,
            ..Default::default()
        }],
        ..Default::default()
    };
    harness.track_stats("RoomSid", &media, sample.clone());
    harness.track_stats("RoomSid", &data, sample);
    assert!(harness.calls().is_empty(), "TrackStats sends nothing at call time");
    let metrics = harness.service.metrics();
    let outgoing = [("direction", "outgoing"), ("country", "DE")];
    assert_eq!(
        metrics.value(
            "livekit_packet_total",
            &[outgoing[0], outgoing[1], ("transmission", "initial")]
        ),
        200.0
    );
    assert_eq!(
        metrics.value(
            "livekit_packet_total",
            &[outgoing[0], outgoing[1], ("transmission", "retransmit")]
        ),
        10.0,
        "downstream retransmits apart"
    );
    assert_eq!(metrics.value("livekit_nack_total", &outgoing), 6.0);
    assert_eq!(
        metrics.value("livekit_packet_loss_total", &[("source", "CAMERA"), ("type", "VIDEO")]),
        2.0,
        "media only"
    );
    assert_eq!(metrics.value("livekit_rtt_ms", &[]), 1.0, "one media observation");
    assert_eq!(metrics.value("livekit_jitter_us", &[]), 1.0);
    assert_eq!(metrics.value("livekit_packet_loss_percent", &[]), 1.0);

    let upstream = telemetry_core::StatsKey::for_data(
        "DE",
        telemetry_core::Direction::Upstream,
        "PA_1",
        "TR_DTPA_1",
    );
    harness.track_stats("RoomSid", &upstream, stat_with_retransmit());
    let metrics = harness.service.metrics();
    assert_eq!(
        metrics.value(
            "livekit_packet_total",
            &[("direction", "incoming"), ("transmission", "initial")]
        ),
        15.0,
        "upstream retransmits are folded into initial"
    );
}

fn stat_with_retransmit() -> lk::AnalyticsStat {
    crate::harness::stat_with(lk::AnalyticsStream {
        primary_packets: 10,
        retransmit_packets: 5,
        ..Default::default()
    })
}
