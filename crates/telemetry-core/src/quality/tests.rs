//! Tests of one detector's hysteresis, of the ids, of the `issue` object and of the report webhook.

use std::sync::Arc;

use crate::keys::Direction;
use crate::quality::detect::{Change, Detector, Reading};
use crate::quality::{IssueKind, QualityChange, QualityIssue, derived_id, room_report_webhook};
use crate::time::UnixMillis;

/// Feeds `readings` at `cadence_ms` from time 0; returns each change with the end of the sample
/// that raised it.
fn feed(readings: impl Fn(i64) -> Reading, cadence_ms: i64, until_ms: i64) -> Vec<(i64, Change)> {
    let mut detector = Detector::default();
    let mut changes = Vec::new();
    let mut start = 0;
    while start < until_ms {
        let end = start + cadence_ms;
        if let Some(change) = detector.observe(readings(start), start, end, 10_000, 10_000, false) {
            changes.push((end, change));
        }
        start = end;
    }
    changes
}

#[test]
fn opens_after_open_after_of_bad_samples_and_closes_after_close_after_of_clean_ones() {
    // Bad from 60 s to 120 s.
    let reading = |start: i64| {
        if (60_000..120_000).contains(&start) { Reading::Bad(start as f32) } else { Reading::Clean }
    };
    for cadence in [1_000, 5_000, 30_000] {
        let changes = feed(reading, cadence, 300_000);
        assert_eq!(
            changes,
            vec![
                (
                    60_000 + 10_000.max(cadence),
                    Change::Opened {
                        started_at: 60_000,
                        value: (60_000 + 10_000.max(cadence) - cadence) as f32
                    }
                ),
                (
                    120_000 + 10_000.max(cadence),
                    Change::Closed {
                        started_at: 60_000,
                        ended_at: 120_000,
                        value: (120_000 - cadence) as f32
                    }
                ),
            ],
            "at {cadence} ms"
        );
    }
}

#[test]
fn a_short_bad_run_or_a_short_clean_gap_changes_nothing() {
    // 9 s of trouble: never opens.
    let short = |start: i64| {
        if (60_000..69_000).contains(&start) { Reading::Bad(1.0) } else { Reading::Clean }
    };
    assert!(feed(short, 1_000, 200_000).is_empty());
    // Trouble with a 5 s clean gap inside: one issue, not two.
    let gap = |start: i64| {
        if (60_000..100_000).contains(&start) && !(80_000..85_000).contains(&start) {
            Reading::Bad(1.0)
        } else {
            Reading::Clean
        }
    };
    let changes = feed(gap, 1_000, 200_000);
    assert_eq!(changes.len(), 2);
    assert!(matches!(changes[1].1, Change::Closed { started_at: 60_000, ended_at: 100_000, .. }));
}

#[test]
fn unknown_readings_neither_extend_nor_break_a_run() {
    let reading = |start: i64| match start {
        0..10_000 => Reading::Bad(1.0),
        10_000..20_000 => Reading::Unknown,
        _ => Reading::Clean,
    };
    // 10 s of bad samples open; unknown ones hold the issue; the clean ones then close it.
    let changes = feed(reading, 1_000, 60_000);
    assert_eq!(
        changes,
        vec![
            (10_000, Change::Opened { started_at: 0, value: 1.0 }),
            (30_000, Change::Closed { started_at: 0, ended_at: 20_000, value: 1.0 }),
        ]
    );
}

#[test]
fn lower_is_worse_keeps_the_lowest_value() {
    let mut detector = Detector::default();
    assert_eq!(detector.observe(Reading::Bad(2.5), 0, 5_000, 10_000, 10_000, true), None);
    assert_eq!(
        detector.observe(Reading::Bad(2.9), 5_000, 10_000, 10_000, 10_000, true),
        Some(Change::Opened { started_at: 0, value: 2.5 })
    );
    assert_eq!(
        detector.force_close(12_000),
        Some(Change::Closed { started_at: 0, ended_at: 12_000, value: 2.5 })
    );
    assert_eq!(detector.force_close(13_000), None, "closed once");
}

#[test]
fn ids_are_stable_and_distinct() {
    let a = derived_id("QI_", &["room", "track", "1"]);
    assert_eq!(a, derived_id("QI_", &["room", "track", "1"]));
    assert_ne!(a, derived_id("QI_", &["room", "track1", ""]), "parts are length-prefixed");
    assert!(crate::ids::is_valid_id(&a, "QI_"), "{a}");
}

#[test]
fn the_issue_object_has_the_fields_of_the_design() {
    let issue = QualityIssue {
        id: "QI_abc".into(),
        kind: IssueKind::PacketLoss,
        direction: Direction::Upstream,
        room_id: Arc::from("RM_1"),
        room_name: Arc::from("room"),
        participant_id: Arc::from("PA_1"),
        identity: Arc::from("alice"),
        track_id: "TR_1".into(),
        value: 12.345_678,
        threshold: 5.0,
        started_at: UnixMillis(1_700_000_000_000),
        ended_at: Some(UnixMillis(1_700_000_060_500)),
        affected: vec!["PA_2".into()],
    };
    expect_test::expect![[r#"{"affected":["PA_2"],"direction":"upstream","endedAt":"2023-11-14T22:14:20.500+00:00","id":"QI_abc","kind":"packet_loss","participantIdentity":"alice","participantSid":"PA_1","roomSid":"RM_1","startedAt":"2023-11-14T22:13:20+00:00","threshold":5.0,"trackSid":"TR_1","value":12.346}"#]]
    .assert_eq(&issue.to_json().to_string());
    let change = QualityChange { at: UnixMillis(1_700_000_070_000), issue };
    assert_eq!(change.event_type(), "QUALITY_ISSUE_ENDED");
    assert_eq!(change.webhook_name(), "quality_recovered");
    assert!(change.event_id().starts_with("AE_") && change.webhook_id().starts_with("EV_"));
    assert_ne!(
        change.event_id(),
        QualityChange {
            at: change.at,
            issue: QualityIssue { ended_at: None, ..change.issue.clone() }
        }
        .event_id()
    );
}

#[test]
fn the_room_report_webhook_is_livekits_event_with_the_report_and_an_id_from_the_room() {
    let report = serde_json::json!({ "durationMs": 1000, "participants": [] });
    let webhook = room_report_webhook("RM_a", "a \"room\"", UnixMillis(1_700_000_000_000), &report);
    let body: serde_json::Value = serde_json::from_str(&webhook.body).expect("JSON");
    assert_eq!(body["event"], "room_report");
    assert_eq!(body["room"], serde_json::json!({ "sid": "RM_a", "name": "a \"room\"" }));
    assert_eq!(body["report"], report, "the report as given, the last field");
    assert_eq!(body["createdAt"], "1700000000");
    assert_eq!(body["id"], webhook.id);
    assert_eq!(
        (webhook.event.as_str(), webhook.subject.room_sid.as_str()),
        ("room_report", "RM_a")
    );
    assert_eq!(webhook.resource_key, "a \"room\"", "ordered with the room's other webhooks");
    let again = room_report_webhook("RM_a", "a \"room\"", UnixMillis(1), &serde_json::json!({}));
    assert_eq!(again.id, webhook.id, "one id per room");
    assert!(webhook.id.starts_with("EV_"));
    assert_ne!(room_report_webhook("RM_b", "a", UnixMillis(1), &report).id, webhook.id);
}
