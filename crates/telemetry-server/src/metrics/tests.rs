//! Tests of the Prometheus rendering: the text format on a hand-made snapshot, and the whole
//! `/metrics` text of a fixed scenario pinned in `golden_metrics.prom`, byte for byte but for the
//! last digits of histogram sums (update it with `UPDATE_EXPECT=1` only when a change of the
//! output is intended).

use std::sync::Arc;
use std::time::Duration;

use telemetry_core::metrics::{Histogram, MetricFamily, MetricKind, MetricValue, MetricsSnapshot};
use telemetry_core::proto as lk;
use telemetry_core::{
    Call, CallMeta, CoreConfig, Direction, ManualClock, StatsKey, TelemetryService, UnixMillis,
};
use telemetry_sim::{SimulateArgs, generate};

use crate::ingest::apply_calls;
use crate::ingest::validate::Limits;
use crate::metrics::{RecorderStream, ServerMetrics, Transport, render};

#[test]
fn families_render_in_prometheus_text_format() {
    let mut histogram = Histogram::new(&[1.0, 5.0]);
    histogram.observe(0.5);
    histogram.observe(3.0);
    histogram.observe(9.0);
    let snapshot = MetricsSnapshot {
        families: vec![
            MetricFamily {
                name: "livekit_packet_total",
                help: "Packets.",
                kind: MetricKind::Counter,
                samples: vec![telemetry_core::metrics::MetricSample {
                    labels: vec![
                        ("direction", "incoming".to_owned()),
                        ("country", "a\"b".to_owned()),
                    ],
                    value: MetricValue::Number(42.0),
                }],
            },
            MetricFamily {
                name: "livekit_rtt_ms",
                help: "RTT.",
                kind: MetricKind::Histogram,
                samples: vec![telemetry_core::metrics::MetricSample {
                    labels: vec![],
                    value: MetricValue::Histogram(histogram),
                }],
            },
        ],
    };
    let text = render(&snapshot, &ServerMetrics::default(), &[]);
    assert!(text.contains("# TYPE livekit_packet_total counter\n"));
    assert!(
        text.contains("livekit_packet_total{direction=\"incoming\",country=\"a\\\"b\"} 42\n"),
        "{text}"
    );
    assert!(text.contains("livekit_rtt_ms_bucket{le=\"1\"} 1\n"));
    assert!(text.contains("livekit_rtt_ms_bucket{le=\"5\"} 2\n"));
    assert!(text.contains("livekit_rtt_ms_bucket{le=\"+Inf\"} 3\n"));
    assert!(text.contains("livekit_rtt_ms_sum 12.5\n"));
    assert!(text.contains("livekit_rtt_ms_count 3\n"));
    assert!(
        text.contains(
            "rtc_telemetry_ingest_calls_total{transport=\"http\",result=\"accepted\"} 0\n"
        )
    );
}

/// 2023-11-14T22:13:20Z: the scenario's clock, the end of its simulated time.
const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// The rendered text of a fixed scenario: ten simulated minutes of two rooms (every lifecycle
/// family, stats with loss, jitter and RTT), then a room left open on a second node with a
/// subscribe failure and a sample from an odd country, flushed; and the service's own counters.
fn scenario_text() -> String {
    let clock = Arc::new(ManualClock::new(T0));
    let (service, _receiver) = TelemetryService::builder(CoreConfig {
        node_id: "golden-node".into(),
        ..CoreConfig::default()
    })
    .clock(clock)
    .id_seed(7)
    .build();
    let args = SimulateArgs {
        seed: 11,
        rooms: 2,
        participants: 4,
        duration: Duration::from_secs(600),
        ..SimulateArgs::default()
    };
    let calls = generate(&args, T0).into_iter().map(Ok);
    let outcome = apply_calls(&service, calls, 0, "golden-key", T0, &Limits::default());
    assert_eq!(outcome.rejected_count, 0, "{:?}", outcome.rejected);

    let node = service.node("sfu-golden-2").expect("a second node");
    let meta = CallMeta { at: T0, node };
    let room = lk::Room { sid: "RM_golden".into(), name: "golden".into(), ..Default::default() };
    let participant = lk::ParticipantInfo {
        sid: "PA_golden".into(),
        identity: "golden".into(),
        ..Default::default()
    };
    let track = lk::TrackInfo {
        sid: "TR_golden".into(),
        r#type: lk::TrackType::Audio as i32,
        source: lk::TrackSource::Microphone as i32,
        ..Default::default()
    };
    for call in [
        Call::RoomStarted { room: room.clone() },
        Call::ParticipantActive {
            room: room.clone(),
            participant: participant.clone(),
            client_meta: None,
            is_migration: false,
            guard: "default".into(),
        },
        Call::TrackPublished {
            room: room.clone(),
            participant_id: participant.sid.clone(),
            identity: participant.identity.clone(),
            track: track.clone(),
            should_send_event: true,
        },
        Call::TrackSubscribeFailed {
            room: room.clone(),
            participant_id: participant.sid.clone(),
            track_id: "TR_elsewhere".into(),
            error: "no permission".into(),
            is_user_error: true,
        },
        Call::TrackStats {
            room_id: room.sid.clone(),
            room_name: room.name.clone(),
            key: StatsKey::for_track(
                "Atlantis",
                Direction::Upstream,
                &participant.sid,
                &track.sid,
                lk::TrackSource::Microphone,
                lk::TrackType::Audio,
            ),
            stat: lk::AnalyticsStat {
                streams: vec![lk::AnalyticsStream {
                    primary_packets: 250,
                    primary_bytes: 20_000,
                    packets_lost: 5,
                    rtt: 120,
                    jitter: 12_000,
                    ..Default::default()
                }],
                ..Default::default()
            },
        },
    ] {
        service.apply(meta, call).expect("applied");
    }
    service.flush_stats_at(T0);

    let server = ServerMetrics::default();
    server.ingest(Transport::Http, 120, 3);
    server.ingest(Transport::Grpc, 7, 0);
    server.refused(429);
    server.refused(400);
    server.recorder(RecorderStream::Events, 4);
    server.recorder_dropped(RecorderStream::Stats, 1);
    server.flush(Duration::from_micros(700));
    server.store_write(Duration::from_millis(3), 42);
    server.store_write_failed();
    render(&service.metrics(), &server, &[])
}

/// Rounds the value of every histogram `_sum` line to six decimals. A sum adds floats in the
/// order the core merges its shards, and which shard a participant lands in depends on the hash
/// seed of the process, so the last digits of a sum differ from run to run; every other byte is
/// compared as it is.
fn round_sums(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        match line.rsplit_once(' ') {
            Some((head, value)) if name.ends_with("_sum") && !line.starts_with('#') => {
                let value: f64 = value.parse().expect("a sum is a number");
                out.push_str(head);
                out.push(' ');
                out.push_str(&format!("{}", (value * 1e6).round() / 1e6));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn the_rendered_metrics_of_a_fixed_scenario_do_not_change() {
    expect_test::expect_file!["golden_metrics.prom"].assert_eq(&round_sums(&scenario_text()));
}
