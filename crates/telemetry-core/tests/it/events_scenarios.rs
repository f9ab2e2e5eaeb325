//! LiveKit's `pkg/telemetry/events_test.go`, restated (reference §6.1).
#![allow(deprecated)] // `TrackInfo.layers` is deprecated in the proto, and LiveKit's test uses it.

use telemetry_core::DEFAULT_GUARD;
use telemetry_core::proto as lk;

use crate::harness::{Harness, participant, room};

/// §6.1.1: a join emits PARTICIPANT_JOINED with every ClientInfo and ClientMeta field.
#[test]
fn join_emits_participant_joined_with_client_info_and_meta() {
    let harness = Harness::new();
    let client_info = lk::ClientInfo {
        sdk: 2,
        version: "1.2.3".into(),
        os: "linux".into(),
        os_version: "6.1".into(),
        device_model: "desktop".into(),
        browser: "chrome".into(),
        browser_version: "120".into(),
        ..Default::default()
    };
    let client_meta = lk::AnalyticsClientMeta {
        region: "eu".into(),
        node: "node-a".into(),
        client_addr: "10.0.0.1".into(),
        client_connect_time: 420,
        ..Default::default()
    };
    let part = lk::ParticipantInfo { sid: "part1".into(), ..Default::default() };
    harness.service.participant_joined(
        room(),
        part.clone(),
        Some(client_info.clone()),
        Some(client_meta.clone()),
        true,
        DEFAULT_GUARD,
    );

    let events = harness.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.r#type, lk::AnalyticsEventType::ParticipantJoined as i32);
    assert_eq!(event.participant_id, "part1");
    assert_eq!(event.participant.as_ref(), Some(&part));
    assert_eq!(event.room_id, "RoomSid");
    assert_eq!(event.room.as_ref(), Some(&room()));
    assert_eq!(event.client_info.as_ref(), Some(&client_info));
    assert_eq!(event.client_meta.as_ref(), Some(&client_meta));
}

/// §6.1.2: active then left emits PARTICIPANT_LEFT, not CONNECTION_ABORTED.
#[test]
fn active_then_left_emits_participant_left() {
    let harness = Harness::new();
    let part = participant("part1");
    harness.service.participant_active(room(), part.clone(), None, false, DEFAULT_GUARD);
    harness.service.participant_left(room(), part.clone(), true, DEFAULT_GUARD);

    let events = harness.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].r#type, lk::AnalyticsEventType::ParticipantActive as i32);
    let left = &events[1];
    assert_eq!(left.r#type, lk::AnalyticsEventType::ParticipantLeft as i32);
    assert_eq!(left.participant_id, "part1");
    assert_eq!(left.room_id, "RoomSid");
    assert_eq!(left.room.as_ref(), Some(&room()));
}

/// §6.1.3: TrackPublishedUpdate keeps the track's layers.
#[test]
fn track_published_update_keeps_layers() {
    let harness = Harness::new();
    let track = lk::TrackInfo {
        sid: "tr1".into(),
        r#type: lk::TrackType::Video as i32,
        layers: vec![lk::VideoLayer {
            quality: lk::VideoQuality::High as i32,
            width: 360,
            height: 720,
            bitrate: 2048,
            ..Default::default()
        }],
        ..Default::default()
    };
    harness.service.track_published_update(room(), "part1", track);

    let events = harness.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.r#type, lk::AnalyticsEventType::TrackPublishedUpdate as i32);
    assert_eq!(event.participant_id, "part1");
    assert_eq!(event.track_id, "tr1");
    let layer = &event.track.as_ref().expect("track").layers[0];
    assert_eq!(
        (layer.width, layer.height, layer.quality, layer.bitrate),
        (360, 720, lk::VideoQuality::High as i32, 2048)
    );
}

/// §6.1.4: PARTICIPANT_ACTIVE after a join carries the connect time.
#[test]
fn active_after_join_carries_connect_time() {
    let harness = Harness::new();
    let part = participant("part1");
    harness.service.participant_joined(room(), part.clone(), None, None, true, DEFAULT_GUARD);
    let meta = lk::AnalyticsClientMeta { client_connect_time: 420, ..Default::default() };
    harness.service.participant_active(room(), part, Some(meta), false, DEFAULT_GUARD);

    let events = harness.events();
    assert_eq!(events.len(), 2);
    let active = &events[1];
    assert_eq!(active.r#type, lk::AnalyticsEventType::ParticipantActive as i32);
    assert_eq!(active.participant_id, "part1");
    assert_eq!(active.room_id, "RoomSid");
    assert_eq!(active.client_meta.as_ref().map(|m| m.client_connect_time), Some(420));
}

/// §6.1.5: TRACK_SUBSCRIBED names the publisher by sid and identity.
#[test]
fn track_subscribed_names_the_publisher() {
    let harness = Harness::new();
    let part = participant("part1");
    harness.service.participant_joined(room(), part, None, None, true, DEFAULT_GUARD);
    let publisher = lk::ParticipantInfo {
        sid: "pub1".into(),
        identity: "publisher".into(),
        metadata: "dropped".into(),
        ..Default::default()
    };
    let track = lk::TrackInfo {
        sid: "tr1".into(),
        r#type: lk::TrackType::Video as i32,
        ..Default::default()
    };
    harness.service.track_subscribed(room(), "part1", track, publisher, true);

    let events = harness.events();
    assert_eq!(events.len(), 2);
    let subscribed = &events[1];
    assert_eq!(subscribed.r#type, lk::AnalyticsEventType::TrackSubscribed as i32);
    assert_eq!(subscribed.participant_id, "part1");
    let track = subscribed.track.as_ref().expect("track");
    assert_eq!((track.sid.as_str(), track.r#type), ("tr1", lk::TrackType::Video as i32));
    assert_eq!(
        subscribed.publisher.as_ref(),
        Some(&lk::ParticipantInfo {
            sid: "pub1".into(),
            identity: "publisher".into(),
            ..Default::default()
        })
    );
}
