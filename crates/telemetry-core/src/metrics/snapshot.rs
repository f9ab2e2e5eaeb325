//! The [`MetricsSnapshot`] of the core: its families built from the shards' merged per-stream
//! cells, each node's lifecycle metrics and the core's own counters, one function per group of
//! families with the same labels. Families come out in a fixed order, samples sorted by node,
//! country, direction and media, so the rendered text is stable.

use hashbrown::HashMap;
use livekit_protocol as lk;

use crate::metrics::names;
use crate::metrics::{
    Histogram, LifecycleMetrics, MetricFamily, MetricKind, MetricSample, MetricValue,
    MetricsSnapshot, SampleCounters, StatsCell, StatsLabels,
};
use crate::nodes::NodeId;

/// Resolves a node id to the `node_id` label.
pub(crate) type NodeName<'a> = &'a dyn Fn(NodeId) -> String;

/// Builds the snapshot; `node_name` resolves node ids.
pub(crate) fn build_snapshot(
    stats: &HashMap<StatsLabels, StatsCell>,
    lifecycle: &[(NodeId, &LifecycleMetrics)],
    samples: &SampleCounters,
    queue: &QueueCounters,
    limits: &LimitCounters,
    node_name: NodeName<'_>,
) -> MetricsSnapshot {
    let cells = sorted_cells(stats);
    let mut families = Vec::new();
    packet_families(&cells, node_name, &mut families);
    feedback_families(&cells, node_name, &mut families);
    media_counter_families(&cells, node_name, &mut families);
    media_histogram_families(&cells, node_name, &mut families);
    lifecycle_families(lifecycle, node_name, &mut families);
    health_families(samples, queue, limits, &mut families);
    MetricsSnapshot { families }
}

/// What the limits on caller-keyed state did, for the snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LimitCounters {
    pub(crate) nodes_live: u64,
    pub(crate) nodes_refused: u64,
    pub(crate) nodes_expired: u64,
    pub(crate) participants_refused: u64,
    pub(crate) participants_closed_idle: u64,
    pub(crate) tracks_dropped_idle: u64,
    pub(crate) open_rooms: u64,
    pub(crate) rooms_refused: u64,
}

/// Queue and worker counts for the snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QueueCounters {
    pub(crate) pushed: u64,
    pub(crate) popped: u64,
    pub(crate) workers: u64,
}

/// Labels, and the value they add up to.
type Labels = Vec<(&'static str, String)>;

/// Extra labels and a value.
type LabelledNumber = (Labels, f64);

/// The per-stream cells, sorted by node, country, direction and media.
type SortedCells<'a> = Vec<(&'a StatsLabels, &'a StatsCell)>;

const TRACK_KINDS: [&str; 3] = ["AUDIO", "VIDEO", "DATA"];

fn sorted_cells(stats: &HashMap<StatsLabels, StatsCell>) -> SortedCells<'_> {
    let mut sorted: SortedCells<'_> = stats.iter().collect();
    sorted.sort_by(|a, b| {
        (a.0.node, &a.0.country, a.0.direction, a.0.media).cmp(&(
            b.0.node,
            &b.0.country,
            b.0.direction,
            b.0.media,
        ))
    });
    sorted
}

/// `livekit_packet_total` and `livekit_packet_bytes`: labels (direction, transmission, country).
fn packet_families(cells: &SortedCells<'_>, node_name: NodeName<'_>, out: &mut Vec<MetricFamily>) {
    let packet_family =
        |name, help, initial: fn(&StatsCell) -> u64, retransmit: fn(&StatsCell) -> u64| {
            let mut merged: Vec<LabelledNumber> = Vec::new();
            for (labels, cell) in cells {
                for (transmission, value) in
                    [("initial", initial(cell)), ("retransmit", retransmit(cell))]
                {
                    let key = base_labels(labels, node_name)
                        .into_iter()
                        .chain([("direction", labels.direction.prometheus_label().to_owned())])
                        .chain([
                            ("transmission", transmission.to_owned()),
                            ("country", labels.country.to_string()),
                        ])
                        .collect::<Vec<_>>();
                    add_number(&mut merged, key, value as f64);
                }
            }
            MetricFamily { name, help, kind: MetricKind::Counter, samples: numbers(merged) }
        };
    out.push(packet_family(
        names::LIVEKIT_PACKET_TOTAL,
        "Packets received (incoming) and sent (outgoing) by the SFU nodes.",
        |cell| cell.packets_initial,
        |cell| cell.packets_retransmit,
    ));
    out.push(packet_family(
        names::LIVEKIT_PACKET_BYTES,
        "Bytes received (incoming) and sent (outgoing) by the SFU nodes.",
        |cell| cell.bytes_initial,
        |cell| cell.bytes_retransmit,
    ));
}

/// `livekit_nack_total`, `livekit_pli_total`, `livekit_fir_total`: labels (direction, country).
fn feedback_families(
    cells: &SortedCells<'_>,
    node_name: NodeName<'_>,
    out: &mut Vec<MetricFamily>,
) {
    for (name, help, value) in [
        (
            names::LIVEKIT_NACK_TOTAL,
            "NACKs.",
            (|cell: &StatsCell| cell.nacks) as fn(&StatsCell) -> u64,
        ),
        (names::LIVEKIT_PLI_TOTAL, "PLIs.", |cell: &StatsCell| cell.plis),
        (names::LIVEKIT_FIR_TOTAL, "FIRs.", |cell: &StatsCell| cell.firs),
    ] {
        let mut merged = Vec::new();
        for (labels, cell) in cells {
            let count = value(cell);
            if count == 0 {
                continue;
            }
            let key = base_labels(labels, node_name)
                .into_iter()
                .chain([
                    ("direction", labels.direction.prometheus_label().to_owned()),
                    ("country", labels.country.to_string()),
                ])
                .collect();
            add_number(&mut merged, key, count as f64);
        }
        out.push(MetricFamily { name, help, kind: MetricKind::Counter, samples: numbers(merged) });
    }
}

/// The labels of media families: (direction, source, type, country).
fn media_labels(
    labels: &StatsLabels,
    (source, track_type): (i32, i32),
    node_name: NodeName<'_>,
) -> Labels {
    let mut key = base_labels(labels, node_name);
    key.push(("direction", labels.direction.prometheus_label().to_owned()));
    key.push((
        "source",
        enum_name(lk::TrackSource::try_from(source).map(|s| s.as_str_name()), source),
    ));
    key.push((
        "type",
        enum_name(lk::TrackType::try_from(track_type).map(|t| t.as_str_name()), track_type),
    ));
    key.push(("country", labels.country.to_string()));
    key
}

/// `livekit_packet_loss_total` and `livekit_packet_out_of_order_total`, media streams only.
fn media_counter_families(
    cells: &SortedCells<'_>,
    node_name: NodeName<'_>,
    out: &mut Vec<MetricFamily>,
) {
    for (name, help, value) in [
        (
            names::LIVEKIT_PACKET_LOSS_TOTAL,
            "Packets lost on media streams.",
            (|c: &StatsCell| c.packet_loss_total) as fn(&StatsCell) -> u64,
        ),
        (
            names::LIVEKIT_PACKET_OUT_OF_ORDER_TOTAL,
            "Packets out of order on media streams.",
            |c: &StatsCell| c.out_of_order_total,
        ),
    ] {
        let mut merged = Vec::new();
        for (labels, cell) in cells {
            if let Some(media) = labels.media
                && value(cell) > 0
            {
                add_number(&mut merged, media_labels(labels, media, node_name), value(cell) as f64);
            }
        }
        out.push(MetricFamily { name, help, kind: MetricKind::Counter, samples: numbers(merged) });
    }
}

/// The per-sample histograms of media streams: loss and out-of-order percent, jitter, RTT.
fn media_histogram_families(
    cells: &SortedCells<'_>,
    node_name: NodeName<'_>,
    out: &mut Vec<MetricFamily>,
) {
    for (name, help, value) in [
        (
            names::LIVEKIT_PACKET_LOSS_PERCENT,
            "Packet loss per stream sample, in percent.",
            (|c: &StatsCell| &c.packet_loss_percent) as fn(&StatsCell) -> &Histogram,
        ),
        (
            names::LIVEKIT_PACKET_OUT_OF_ORDER_PERCENT,
            "Out-of-order packets per stream sample, in percent.",
            |c: &StatsCell| &c.out_of_order_percent,
        ),
        (
            names::LIVEKIT_JITTER_US,
            "Jitter per stream sample, in microseconds.",
            |c: &StatsCell| &c.jitter_us,
        ),
        (
            names::LIVEKIT_RTT_MS,
            "Round-trip time per stream sample, in milliseconds.",
            |c: &StatsCell| &c.rtt_ms,
        ),
    ] {
        let mut merged: Vec<(Labels, Histogram)> = Vec::new();
        for (labels, cell) in cells {
            if let Some(media) = labels.media
                && value(cell).count() > 0
            {
                let key = media_labels(labels, media, node_name);
                match merged.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, histogram)) => histogram.merge(value(cell)),
                    None => merged.push((key, value(cell).clone())),
                }
            }
        }
        out.push(MetricFamily {
            name,
            help,
            kind: MetricKind::Histogram,
            samples: merged
                .into_iter()
                .map(|(labels, histogram)| MetricSample {
                    labels,
                    value: MetricValue::Histogram(histogram),
                })
                .collect(),
        });
    }
}

/// The node labels of lifecycle families.
fn node_labels(node: NodeId, node_name: NodeName<'_>) -> Labels {
    vec![("node_id", node_name(node)), ("node_type", "SERVER".to_owned())]
}

/// Rooms, participants and tracks per node: LiveKit's lifecycle gauges and counters, and
/// `livekit_room_duration_seconds`.
fn lifecycle_families(
    lifecycle: &[(NodeId, &LifecycleMetrics)],
    node_name: NodeName<'_>,
    out: &mut Vec<MetricFamily>,
) {
    let mut family =
        |name, help, kind, value: &dyn Fn(&LifecycleMetrics) -> Vec<LabelledNumber>| {
            let mut samples = Vec::new();
            for (node, metrics) in lifecycle {
                for (extra, number) in value(metrics) {
                    let mut labels = node_labels(*node, node_name);
                    labels.extend(extra);
                    samples.push(MetricSample { labels, value: MetricValue::Number(number) });
                }
            }
            out.push(MetricFamily { name, help, kind, samples });
        };
    family(names::LIVEKIT_ROOM_TOTAL, "Rooms currently open.", MetricKind::Gauge, &|m| {
        vec![(vec![], m.rooms as f64)]
    });
    family(
        names::LIVEKIT_PARTICIPANT_TOTAL,
        "Participants with a stats worker.",
        MetricKind::Gauge,
        &|m| vec![(vec![], m.participants as f64)],
    );
    family(
        names::LIVEKIT_PARTICIPANT_JOIN_TOTAL,
        "Participant join progress.",
        MetricKind::Counter,
        &|m| {
            vec![
                (
                    vec![("state", "rtc_connected".to_owned()), ("warp", String::new())],
                    m.join_rtc_connected as f64,
                ),
                (
                    vec![("state", "rtc_active".to_owned()), ("warp", String::new())],
                    m.join_rtc_active as f64,
                ),
            ]
        },
    );
    family(
        names::LIVEKIT_TRACK_PUBLISHED_TOTAL,
        "Tracks currently published.",
        MetricKind::Gauge,
        &|m| per_kind(|kind| m.tracks_published[kind] as f64),
    );
    family(
        names::LIVEKIT_TRACK_SUBSCRIBED_TOTAL,
        "Tracks currently subscribed.",
        MetricKind::Gauge,
        &|m| per_kind(|kind| m.tracks_subscribed[kind] as f64),
    );
    family(
        names::LIVEKIT_TRACK_PUBLISH_COUNTER,
        "Track publish attempts and successes.",
        MetricKind::Counter,
        &|m| {
            (0..3)
                .flat_map(|i| {
                    [("attempt", m.publish_attempts[i]), ("success", m.publish_successes[i])].map(
                        |(state, count)| {
                            (
                                vec![
                                    ("kind", TRACK_KINDS[i].to_owned()),
                                    ("state", state.to_owned()),
                                ],
                                count as f64,
                            )
                        },
                    )
                })
                .collect()
        },
    );
    family(
        names::LIVEKIT_TRACK_SUBSCRIBE_COUNTER,
        "Track subscribe attempts, successes and failures.",
        MetricKind::Counter,
        &|m| {
            let mut values = vec![
                (
                    vec![("state", "attempt".to_owned()), ("error", String::new())],
                    m.subscribe_attempts as f64,
                ),
                (
                    vec![("state", "success".to_owned()), ("error", String::new())],
                    m.subscribe_successes as f64,
                ),
            ];
            values.extend(m.subscribe_failures.iter().map(|(error, count)| {
                (vec![("state", "failure".to_owned()), ("error", error.clone())], *count as f64)
            }));
            values
        },
    );
    let durations = lifecycle
        .iter()
        .filter_map(|(node, metrics)| {
            metrics.room_duration.as_ref().map(|histogram| MetricSample {
                labels: node_labels(*node, node_name),
                value: MetricValue::Histogram(histogram.clone()),
            })
        })
        .collect();
    out.push(MetricFamily {
        name: names::LIVEKIT_ROOM_DURATION_SECONDS,
        help: "Room durations, from room_started to room_finished.",
        kind: MetricKind::Histogram,
        samples: durations,
    });
}

/// One value per track kind (AUDIO, VIDEO, DATA), labelled `kind`.
fn per_kind(value: impl Fn(usize) -> f64) -> Vec<LabelledNumber> {
    (0..3).map(|kind| (vec![("kind", TRACK_KINDS[kind].to_owned())], value(kind))).collect()
}

/// The core's own health: samples by outcome, limits, the output queue, the workers.
fn health_families(
    samples: &SampleCounters,
    queue: &QueueCounters,
    limits: &LimitCounters,
    out: &mut Vec<MetricFamily>,
) {
    let number = |labels: Labels, value: u64| MetricSample {
        labels,
        value: MetricValue::Number(value as f64),
    };
    let outcome = |name: &str, value: u64| number(vec![("outcome", name.to_owned())], value);
    out.push(MetricFamily {
        name: names::STATS_SAMPLES_TOTAL,
        help: "TrackStats samples by outcome: recorded, without_worker, invalid, shed.",
        kind: MetricKind::Counter,
        samples: vec![
            outcome("recorded", samples.recorded),
            outcome("without_worker", samples.without_worker),
            outcome("invalid", samples.invalid),
            outcome("shed_overload", samples.shed_overload),
            outcome("shed_track_limit", samples.shed_track_limit),
            outcome("shed_too_many_tracks", samples.shed_too_many_tracks),
        ],
    });
    let limit = |name: &str, value: u64| number(vec![("limit", name.to_owned())], value);
    out.push(MetricFamily {
        name: names::LIMIT_REFUSALS_TOTAL,
        help: "What the limits on caller-keyed state refused: calls of new nodes (limits.max_nodes), stats workers of joins (limits.max_participants), rooms tracked in livekit_room_total (limits.max_open_rooms).",
        kind: MetricKind::Counter,
        samples: vec![
            limit("nodes", limits.nodes_refused),
            limit("participants", limits.participants_refused),
            limit("open_rooms", limits.rooms_refused),
        ],
    });
    let kind = |name: &str, value: u64| number(vec![("kind", name.to_owned())], value);
    out.push(MetricFamily {
        name: names::IDLE_EXPIRED_TOTAL,
        help: "State forgotten for idleness: nodes (limits.node_idle_timeout), stats workers closed and tracks dropped (limits.participant_idle_timeout).",
        kind: MetricKind::Counter,
        samples: vec![
            kind("nodes", limits.nodes_expired),
            kind("participants", limits.participants_closed_idle),
            kind("tracks", limits.tracks_dropped_idle),
        ],
    });
    out.push(MetricFamily {
        name: names::LIVE,
        help: "Caller-keyed state held now: nodes (limits.max_nodes), open rooms (limits.max_open_rooms).",
        kind: MetricKind::Gauge,
        samples: vec![kind("nodes", limits.nodes_live), kind("open_rooms", limits.open_rooms)],
    });
    out.push(MetricFamily {
        name: names::CORE_OUTPUTS_PUSHED_TOTAL,
        help: "Outputs (events, webhooks, stats batches, node rates) put on the ordered output queue.",
        kind: MetricKind::Counter,
        samples: vec![number(vec![], queue.pushed)],
    });
    out.push(MetricFamily {
        name: names::CORE_OUTPUTS_POPPED_TOTAL,
        help: "Outputs taken off the ordered output queue by its consumer.",
        kind: MetricKind::Counter,
        samples: vec![number(vec![], queue.popped)],
    });
    out.push(MetricFamily {
        name: names::STATS_WORKERS,
        help: "Stats workers currently held, closed ones awaiting their reap included.",
        kind: MetricKind::Gauge,
        samples: vec![number(vec![], queue.workers)],
    });
}

fn base_labels(labels: &StatsLabels, node_name: NodeName<'_>) -> Labels {
    vec![("node_id", node_name(labels.node)), ("node_type", "SERVER".to_owned())]
}

fn add_number(merged: &mut Vec<LabelledNumber>, key: Labels, value: f64) {
    match merged.iter_mut().find(|(k, _)| *k == key) {
        Some((_, total)) => *total += value,
        None => merged.push((key, value)),
    }
}

fn numbers(merged: Vec<LabelledNumber>) -> Vec<MetricSample> {
    merged
        .into_iter()
        .map(|(labels, value)| MetricSample { labels, value: MetricValue::Number(value) })
        .collect()
}

fn enum_name<E>(name: Result<&'static str, E>, number: i32) -> String {
    name.map(str::to_owned).unwrap_or_else(|_| number.to_string())
}
