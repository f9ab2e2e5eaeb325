//! The service's own metrics and the Prometheus text rendering of everything: the core's
//! families (LiveKit's names) and `rtc_telemetry_*` for ingest, flush, store and pipeline.
//! Metric names are constants of `telemetry_core::metrics::names`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot_free::Mutex;
use telemetry_core::metrics::{
    Histogram, MetricFamily, MetricKind, MetricValue, MetricsSnapshot, names,
};

mod parking_lot_free {
    /// A `std` mutex that ignores poisoning (a metric is still a metric after a panic).
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// Latency buckets, in seconds.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Which ingest path a call came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `POST /v1/telemetry`.
    Http,
    /// `rtctelemetry.v1.TelemetryIngest/Ingest`.
    Grpc,
}

/// The LiveKit recorder stream a message came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecorderStream {
    /// `IngestStats`.
    Stats,
    /// `IngestEvents`.
    Events,
    /// `IngestNodeRoomStates`.
    NodeRoomStates,
}

impl RecorderStream {
    /// Every stream, in the order of their counters.
    pub const ALL: [RecorderStream; 3] =
        [RecorderStream::Stats, RecorderStream::Events, RecorderStream::NodeRoomStates];

    /// The stream's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecorderStream::Stats => "stats",
            RecorderStream::Events => "events",
            RecorderStream::NodeRoomStates => "node_room_states",
        }
    }
}

/// Counters and histograms of the service itself.
#[derive(Debug)]
pub struct ServerMetrics {
    /// Calls accepted and rejected, by transport: `[http, grpc] x [accepted, rejected]`.
    ingest_calls: [[AtomicU64; 2]; 2],
    /// Requests refused whole, by HTTP status class of the refusal (4xx other than 429, 429, 5xx).
    ingest_refused: [AtomicU64; 3],
    recorder_messages: [AtomicU64; 3],
    /// Recorder items (events, stats, node room states) dropped as invalid, by stream.
    recorder_dropped: [AtomicU64; 3],
    flush_seconds: Mutex<Histogram>,
    store_write_seconds: Mutex<Histogram>,
    store_write_failures: AtomicU64,
    stored_outputs: AtomicU64,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            ingest_calls: Default::default(),
            ingest_refused: Default::default(),
            recorder_messages: Default::default(),
            recorder_dropped: Default::default(),
            flush_seconds: Mutex::new(Histogram::new(SECONDS_BUCKETS)),
            store_write_seconds: Mutex::new(Histogram::new(SECONDS_BUCKETS)),
            store_write_failures: AtomicU64::new(0),
            stored_outputs: AtomicU64::new(0),
        }
    }
}

impl ServerMetrics {
    /// Counts calls of one request.
    pub fn ingest(&self, transport: Transport, accepted: u64, rejected: u64) {
        let row = &self.ingest_calls[transport as usize];
        row[0].fetch_add(accepted, Ordering::Relaxed);
        row[1].fetch_add(rejected, Ordering::Relaxed);
    }

    /// Counts a request refused whole with `status`.
    pub fn refused(&self, status: u16) {
        let index = match status {
            429 => 1,
            500.. => 2,
            _ => 0,
        };
        self.ingest_refused[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts recorder messages.
    pub fn recorder(&self, stream: RecorderStream, messages: u64) {
        self.recorder_messages[stream as usize].fetch_add(messages, Ordering::Relaxed);
    }

    /// Counts recorder items dropped as invalid.
    pub fn recorder_dropped(&self, stream: RecorderStream, items: u64) {
        self.recorder_dropped[stream as usize].fetch_add(items, Ordering::Relaxed);
    }

    /// Records how long a flush took.
    pub fn flush(&self, took: Duration) {
        self.flush_seconds.lock().observe(took.as_secs_f64());
    }

    /// Records a store write of `outputs` outputs.
    pub fn store_write(&self, took: Duration, outputs: u64) {
        self.store_write_seconds.lock().observe(took.as_secs_f64());
        self.stored_outputs.fetch_add(outputs, Ordering::Relaxed);
    }

    /// Counts a failed store write (it is retried).
    pub fn store_write_failed(&self) {
        self.store_write_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns calls accepted over every transport.
    pub fn accepted_calls(&self) -> u64 {
        self.ingest_calls.iter().map(|row| row[0].load(Ordering::Relaxed)).sum()
    }

    fn families(&self) -> Vec<MetricFamily> {
        let number = |labels: Vec<(&'static str, String)>, value: u64| {
            telemetry_core::metrics::MetricSample {
                labels,
                value: MetricValue::Number(value as f64),
            }
        };
        let mut ingest = Vec::new();
        for (transport, name) in [(Transport::Http, "http"), (Transport::Grpc, "grpc")] {
            for (column, result) in ["accepted", "rejected"].iter().enumerate() {
                ingest.push(number(
                    vec![("transport", name.to_owned()), ("result", (*result).to_owned())],
                    self.ingest_calls[transport as usize][column].load(Ordering::Relaxed),
                ));
            }
        }
        let refused = ["4xx", "429", "5xx"]
            .iter()
            .enumerate()
            .map(|(index, status)| {
                number(
                    vec![("status", (*status).to_owned())],
                    self.ingest_refused[index].load(Ordering::Relaxed),
                )
            })
            .collect();
        let per_stream = |counts: &[AtomicU64; 3]| {
            RecorderStream::ALL
                .iter()
                .map(|stream| {
                    number(
                        vec![("stream", stream.as_str().to_owned())],
                        counts[*stream as usize].load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        let recorder = per_stream(&self.recorder_messages);
        let recorder_dropped = per_stream(&self.recorder_dropped);
        let histogram = |histogram: &Mutex<Histogram>| {
            vec![telemetry_core::metrics::MetricSample {
                labels: Vec::new(),
                value: MetricValue::Histogram(histogram.lock().clone()),
            }]
        };
        vec![
            MetricFamily {
                name: names::INGEST_CALLS_TOTAL,
                help: "Telemetry calls received, by transport and result (a rejected call is reported in the response).",
                kind: MetricKind::Counter,
                samples: ingest,
            },
            MetricFamily {
                name: names::INGEST_REQUESTS_REFUSED_TOTAL,
                help: "Ingest requests refused whole, by status.",
                kind: MetricKind::Counter,
                samples: refused,
            },
            MetricFamily {
                name: names::RECORDER_MESSAGES_TOTAL,
                help: "Messages received on LiveKit's AnalyticsRecorderService streams.",
                kind: MetricKind::Counter,
                samples: recorder,
            },
            MetricFamily {
                name: names::RECORDER_DROPPED_TOTAL,
                help: "Items of AnalyticsRecorderService messages (events, stats, node room states) dropped as invalid.",
                kind: MetricKind::Counter,
                samples: recorder_dropped,
            },
            MetricFamily {
                name: names::FLUSH_DURATION_SECONDS,
                help: "How long a flush of every stats worker took.",
                kind: MetricKind::Histogram,
                samples: histogram(&self.flush_seconds),
            },
            MetricFamily {
                name: names::STORE_WRITE_SECONDS,
                help: "How long a store write (one transaction) took.",
                kind: MetricKind::Histogram,
                samples: histogram(&self.store_write_seconds),
            },
            MetricFamily {
                name: names::STORE_WRITE_FAILURES_TOTAL,
                help: "Store writes that failed (each is retried until it succeeds).",
                kind: MetricKind::Counter,
                samples: vec![number(
                    Vec::new(),
                    self.store_write_failures.load(Ordering::Relaxed),
                )],
            },
            MetricFamily {
                name: names::STORED_OUTPUTS_TOTAL,
                help: "Core outputs (events, stats batches, node states, rate cells) stored.",
                kind: MetricKind::Counter,
                samples: vec![number(Vec::new(), self.stored_outputs.load(Ordering::Relaxed))],
            },
        ]
    }
}

/// Cluster mode's families: the partitions held now, lease events
/// (`[renewal, taken, lost, released]`) and messages published (`[stored, duplicate]`).
pub fn cluster_families(
    owned: usize,
    leases: [u64; 4],
    published: [u64; 2],
    consumed: [u64; 3],
    refused_calls: u64,
) -> Vec<MetricFamily> {
    let sample = |labels: Vec<(&'static str, String)>, value: f64| {
        telemetry_core::metrics::MetricSample { labels, value: MetricValue::Number(value) }
    };
    let labelled = |label: &'static str, names: &[&str], values: &[u64]| {
        names
            .iter()
            .zip(values)
            .map(|(name, value)| sample(vec![(label, (*name).to_owned())], *value as f64))
            .collect()
    };
    vec![
        MetricFamily {
            name: names::CLUSTER_PARTITIONS_OWNED,
            help: "Partitions whose lease this instance holds now.",
            kind: MetricKind::Gauge,
            samples: vec![sample(Vec::new(), owned as f64)],
        },
        MetricFamily {
            name: names::CLUSTER_LEASE_EVENTS_TOTAL,
            help: "Changes of this instance's partition leases: heartbeats that renewed them, partitions taken, lost (not renewed in time) and given back.",
            kind: MetricKind::Counter,
            samples: labelled("event", &["renewal", "taken", "lost", "released"], &leases),
        },
        MetricFamily {
            name: names::CLUSTER_PUBLISHED_MESSAGES_TOTAL,
            help: "Messages ingest published to JetStream and JetStream acknowledged, by outcome (duplicate: a repeated Idempotency-Key, stored once already).",
            kind: MetricKind::Counter,
            samples: labelled("outcome", &["stored", "duplicate"], &published),
        },
        MetricFamily {
            name: names::CLUSTER_CONSUMED_MESSAGES_TOTAL,
            help: "JetStream messages the partition consumers received, by outcome (applied to the core; redelivered while already applied and waiting for its acknowledgement; acknowledged once durable).",
            kind: MetricKind::Counter,
            samples: labelled("outcome", &["applied", "redelivered", "acknowledged"], &consumed),
        },
        MetricFamily {
            name: names::CLUSTER_REFUSED_CALLS_TOTAL,
            help: "Calls of consumed JetStream messages that were not applied (undecodable, invalid, a node over its cap, a sample shed); each is logged.",
            kind: MetricKind::Counter,
            samples: vec![sample(Vec::new(), refused_calls as f64)],
        },
    ]
}

/// The partition consumers' lag, as JetStream reports it (`crate::cluster::lag`): one sample
/// per partition held, labelled `partition`.
pub fn consumer_lag_families(
    readings: &std::collections::BTreeMap<u32, crate::cluster::lag::PartitionLag>,
) -> Vec<MetricFamily> {
    let by_partition = |value: fn(&crate::cluster::lag::PartitionLag) -> u64| {
        readings
            .iter()
            .map(|(partition, reading)| telemetry_core::metrics::MetricSample {
                labels: vec![("partition", partition.to_string())],
                value: MetricValue::Number(value(reading) as f64),
            })
            .collect()
    };
    vec![
        MetricFamily {
            name: names::CLUSTER_CONSUMER_LAG,
            help: "Messages of a partition this instance holds that JetStream has not delivered yet or that are delivered and not yet acknowledged (stored), by partition; read from the consumer info every few seconds.",
            kind: MetricKind::Gauge,
            samples: by_partition(|reading| reading.lag),
        },
        MetricFamily {
            name: names::CLUSTER_CONSUMER_REDELIVERED,
            help: "Messages of a partition this instance holds, not yet acknowledged, that JetStream delivered more than once (after `ack_wait`, or to a new owner), by partition.",
            kind: MetricKind::Gauge,
            samples: by_partition(|reading| reading.redelivered),
        },
    ]
}

/// The Janus ingest's families: events by outcome, stats samples shed, the adapter's refusals by
/// cap, sessions expired, counters that started again, and the state held.
pub fn janus_families(
    events: [u64; 3],
    shed: u64,
    counters: &telemetry_janus::Counters,
    [emitters, sessions, rooms]: [usize; 3],
) -> Vec<MetricFamily> {
    let sample = |labels: Vec<(&'static str, String)>, value: f64| {
        telemetry_core::metrics::MetricSample { labels, value: MetricValue::Number(value) }
    };
    let labelled = |label: &'static str, values: &[(&str, u64)]| {
        values
            .iter()
            .map(|(name, value)| sample(vec![(label, (*name).to_owned())], *value as f64))
            .collect()
    };
    vec![
        MetricFamily {
            name: names::JANUS_EVENTS_TOTAL,
            help: "Janus events received on POST /v1/ingest/janus, by outcome (ignored: nothing for telemetry, such as transport requests or a repeated ICE state).",
            kind: MetricKind::Counter,
            samples: labelled(
                "outcome",
                &[("accepted", events[0]), ("ignored", events[1]), ("rejected", events[2])],
            ),
        },
        MetricFamily {
            name: names::JANUS_SAMPLES_SHED_TOTAL,
            help: "Stats samples made from Janus events that the core shed (its output queue over its limit).",
            kind: MetricKind::Counter,
            samples: vec![sample(Vec::new(), shed as f64)],
        },
        MetricFamily {
            name: names::JANUS_LIMIT_REFUSALS_TOTAL,
            help: "Janus events rejected by a cap of the [janus] section, by cap.",
            kind: MetricKind::Counter,
            samples: labelled(
                "limit",
                &[
                    ("emitters", counters.refused_emitters),
                    ("sessions", counters.refused_sessions),
                    ("handles", counters.refused_handles),
                    ("rooms", counters.refused_rooms),
                    ("streams", counters.refused_streams),
                ],
            ),
        },
        MetricFamily {
            name: names::JANUS_SESSIONS_EXPIRED_TOTAL,
            help: "Janus sessions taken as gone after janus.session_idle_timeout without an event.",
            kind: MetricKind::Counter,
            samples: vec![sample(Vec::new(), counters.sessions_expired as f64)],
        },
        MetricFamily {
            name: names::JANUS_COUNTER_RESETS_TOTAL,
            help: "Janus media counters that went back (a new PeerConnection): a new baseline instead of a negative sample.",
            kind: MetricKind::Counter,
            samples: vec![sample(Vec::new(), counters.counter_resets as f64)],
        },
        MetricFamily {
            name: names::JANUS_STATE,
            help: "What the Janus adapter holds: Janus servers, sessions and rooms.",
            kind: MetricKind::Gauge,
            samples: labelled(
                "kind",
                &[
                    ("emitters", emitters as u64),
                    ("sessions", sessions as u64),
                    ("rooms", rooms as u64),
                ],
            ),
        },
    ]
}

/// Renders the core's and the service's metrics as Prometheus text (version 0.0.4).
pub fn render(core: &MetricsSnapshot, server: &ServerMetrics, extra: &[MetricFamily]) -> String {
    let mut out = String::new();
    for family in core.families.iter().chain(server.families().iter()).chain(extra) {
        render_family(&mut out, family);
    }
    out
}

fn render_family(out: &mut String, family: &MetricFamily) {
    let kind = match family.kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
        MetricKind::Histogram => "histogram",
    };
    let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
    let _ = writeln!(out, "# TYPE {} {kind}", family.name);
    for sample in &family.samples {
        match &sample.value {
            MetricValue::Number(value) => {
                let _ = writeln!(
                    out,
                    "{}{} {}",
                    family.name,
                    labels(&sample.labels, None),
                    number(*value)
                );
            }
            MetricValue::Histogram(histogram) => {
                let mut cumulative = 0;
                for (bound, count) in histogram.bounds.iter().zip(histogram.counts()) {
                    cumulative += count;
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {cumulative}",
                        family.name,
                        labels(&sample.labels, Some(&number(*bound)))
                    );
                }
                let total = histogram.count();
                let _ = writeln!(
                    out,
                    "{}_bucket{} {total}",
                    family.name,
                    labels(&sample.labels, Some("+Inf"))
                );
                let _ = writeln!(
                    out,
                    "{}_sum{} {}",
                    family.name,
                    labels(&sample.labels, None),
                    number(histogram.sum)
                );
                let _ =
                    writeln!(out, "{}_count{} {total}", family.name, labels(&sample.labels, None));
            }
        }
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    for (index, (name, value)) in labels.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{name}=\"{escaped}\"");
    }
    if let Some(le) = le {
        if !labels.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
