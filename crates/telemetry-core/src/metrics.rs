//! The core's metrics: LiveKit's Prometheus families for what the telemetry service sees
//! (reference §5, names and buckets kept verbatim) and the core's own `rtc_telemetry_*` health.
//!
//! The core does no IO, so it keeps plain numbers and hands out a [`MetricsSnapshot`] that the
//! server renders as Prometheus text. Per-sample metrics live in each worker shard, under the lock
//! a `TrackStats` call already takes there, so the hot path never writes a cache line that another
//! core also writes. Lifecycle metrics live under the lifecycle lock.
//!
//! Every metric name is a constant of [`names`]; `snapshot` builds the families.

pub mod names;
mod snapshot;

pub(crate) use snapshot::{LimitCounters, QueueCounters, build_snapshot};

use hashbrown::{Equivalent, HashMap};
use livekit_protocol as lk;

use crate::keys::{Direction, StatsKey};
use crate::nodes::NodeId;

/// LiveKit's `livekit_packet_loss_percent` and `livekit_packet_out_of_order_percent` buckets.
pub const PERCENT_BUCKETS: &[f64] = &[0.0, 0.1, 0.3, 0.5, 0.7, 1.0, 5.0, 10.0, 40.0, 100.0];
/// LiveKit's `livekit_jitter_us` buckets: 1 ms to 1 s, in microseconds.
pub const JITTER_US_BUCKETS: &[f64] =
    &[1000.0, 10000.0, 30000.0, 50000.0, 70000.0, 100000.0, 300000.0, 600000.0, 1000000.0];
/// LiveKit's `livekit_rtt_ms` buckets.
pub const RTT_MS_BUCKETS: &[f64] =
    &[50.0, 100.0, 150.0, 200.0, 250.0, 500.0, 750.0, 1000.0, 5000.0, 10000.0];
/// LiveKit's `livekit_room_duration_seconds` buckets.
pub const ROOM_DURATION_BUCKETS: &[f64] =
    &[5.0, 10.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 18000.0, 36000.0];

/// Distinct `error` label values kept for `livekit_track_subscribe_counter`; LiveKit puts
/// `err.Error()` there unbounded, later values are folded into `other`.
pub const MAX_SUBSCRIBE_ERROR_LABELS: usize = 64;

/// The most buckets a histogram has, `+Inf` included.
const MAX_BUCKETS: usize = 12;

/// A histogram with fixed buckets, its counts inline (no heap, one cache line pair).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending (the `+Inf` bucket is implicit); at most 11.
    pub bounds: &'static [f64],
    counts: [u64; MAX_BUCKETS],
    /// Sum of observations.
    pub sum: f64,
}

impl Histogram {
    /// Creates an empty histogram.
    ///
    /// # Panics
    ///
    /// Panics if there are more than 11 bounds (bucket sets are constants of this module).
    pub fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() < MAX_BUCKETS, "at most {} bounds", MAX_BUCKETS - 1);
        Self { bounds, counts: [0; MAX_BUCKETS], sum: 0.0 }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        let index =
            self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.counts[index] += 1;
        self.sum += value;
    }

    /// Records an observation of zero, which falls in the first bucket of every bucket set here.
    fn observe_zero(&mut self) {
        debug_assert!(self.bounds[0] >= 0.0);
        self.counts[0] += 1;
    }

    /// Returns the observations per bucket, not cumulative; the last entry is `+Inf`.
    pub fn counts(&self) -> &[u64] {
        &self.counts[..=self.bounds.len()]
    }

    /// Returns the number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Returns the sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    fn merge(&mut self, other: &Histogram) {
        for (count, other_count) in self.counts.iter_mut().zip(&other.counts) {
            *count += other_count;
        }
        self.sum += other.sum;
    }
}

/// What kind of Prometheus metric a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Histogram.
    Histogram,
}

/// One labelled value of a family.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// A counter or gauge value.
    Number(f64),
    /// A histogram.
    Histogram(Histogram),
}

/// One labelled sample.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: MetricValue,
}

/// A metric family: a name, its help text, its kind and its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricFamily {
    /// Full metric name, exactly as exported.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Samples, one per label set.
    pub samples: Vec<MetricSample>,
}

/// Every metric of the core at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// The families, in a stable order.
    pub families: Vec<MetricFamily>,
}

impl MetricsSnapshot {
    /// Returns the family called `name`.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|family| family.name == name)
    }

    /// Returns the value of the counter or gauge `name` whose labels include all of `labels`,
    /// summed over matching samples; 0 if none match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.family(name)
            .map(|family| {
                family
                    .samples
                    .iter()
                    .filter(|sample| {
                        labels.iter().all(|(key, value)| {
                            sample.labels.iter().any(|(k, v)| k == key && v == value)
                        })
                    })
                    .map(|sample| match &sample.value {
                        MetricValue::Number(number) => *number,
                        MetricValue::Histogram(histogram) => histogram.count() as f64,
                    })
                    .sum()
            })
            .unwrap_or(0.0)
    }
}

/// Counters of what happened to `TrackStats` samples; kept per shard, summed in snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleCounters {
    /// Samples folded into a stats worker.
    pub recorded: u64,
    /// Samples for a participant without a stats worker (counted in node rates and Prometheus,
    /// not in analytics, as in LiveKit).
    pub without_worker: u64,
    /// Samples skipped because a counter was negative.
    pub invalid: u64,
    /// Samples shed because the sinks fell behind (`max_pending_outputs`).
    pub shed_overload: u64,
    /// Samples shed because one track sent more than `max_samples_per_track` between flushes.
    pub shed_track_limit: u64,
    /// Samples of a new track shed because the participant had
    /// `limits.max_tracks_per_participant` tracks.
    pub shed_too_many_tracks: u64,
}

impl SampleCounters {
    pub(crate) fn add(&mut self, other: &SampleCounters) {
        self.recorded += other.recorded;
        self.without_worker += other.without_worker;
        self.invalid += other.invalid;
        self.shed_overload += other.shed_overload;
        self.shed_track_limit += other.shed_track_limit;
        self.shed_too_many_tracks += other.shed_too_many_tracks;
    }
}

/// The `country` label of a sample: LiveKit's country is a two-letter code (ISO 3166-1 alpha-2,
/// from GeoIP) or empty; anything else a caller sends is `other`, so callers cannot grow the
/// label's values past 26 × 26 + 2.
pub(crate) fn country_label(country: &str) -> &str {
    match country.as_bytes() {
        [] => "",
        [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => country,
        _ => "other",
    }
}

/// The labels of LiveKit's per-stream metrics, at their finest: node, country, direction, and for
/// media the track source and type. Coarser families sum over the extra labels at export.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StatsLabels {
    node: NodeId,
    country: Box<str>,
    direction: Direction,
    media: Option<(i32, i32)>,
}

#[derive(Hash)]
struct StatsLabelsRef<'a> {
    node: NodeId,
    country: &'a str,
    direction: Direction,
    media: Option<(i32, i32)>,
}

// The derived `Hash` of both types feeds the same fields in the same order (`&str` and
// `Box<str>` hash alike), which `Equivalent` lookups require.
impl Equivalent<StatsLabels> for StatsLabelsRef<'_> {
    fn equivalent(&self, key: &StatsLabels) -> bool {
        self.node == key.node
            && self.direction == key.direction
            && self.media == key.media
            && *self.country == *key.country
    }
}

#[derive(Clone, Debug)]
pub(crate) struct StatsCell {
    packets_initial: u64,
    packets_retransmit: u64,
    bytes_initial: u64,
    bytes_retransmit: u64,
    nacks: u64,
    plis: u64,
    firs: u64,
    packet_loss_total: u64,
    packet_loss_percent: Histogram,
    out_of_order_total: u64,
    out_of_order_percent: Histogram,
    jitter_us: Histogram,
    rtt_ms: Histogram,
}

impl Default for StatsCell {
    fn default() -> Self {
        Self {
            packets_initial: 0,
            packets_retransmit: 0,
            bytes_initial: 0,
            bytes_retransmit: 0,
            nacks: 0,
            plis: 0,
            firs: 0,
            packet_loss_total: 0,
            packet_loss_percent: Histogram::new(PERCENT_BUCKETS),
            out_of_order_total: 0,
            out_of_order_percent: Histogram::new(PERCENT_BUCKETS),
            jitter_us: Histogram::new(JITTER_US_BUCKETS),
            rtt_ms: Histogram::new(RTT_MS_BUCKETS),
        }
    }
}

impl StatsCell {
    fn merge(&mut self, other: &StatsCell) {
        self.packets_initial += other.packets_initial;
        self.packets_retransmit += other.packets_retransmit;
        self.bytes_initial += other.bytes_initial;
        self.bytes_retransmit += other.bytes_retransmit;
        self.nacks += other.nacks;
        self.plis += other.plis;
        self.firs += other.firs;
        self.packet_loss_total += other.packet_loss_total;
        self.packet_loss_percent.merge(&other.packet_loss_percent);
        self.out_of_order_total += other.out_of_order_total;
        self.out_of_order_percent.merge(&other.out_of_order_percent);
        self.jitter_us.merge(&other.jitter_us);
        self.rtt_ms.merge(&other.rtt_ms);
    }
}

fn observe_percent(histogram: &mut Histogram, part: u32, total: f64) {
    if part == 0 {
        histogram.observe_zero();
    } else {
        histogram.observe(f64::from(part) / total * 100.0);
    }
}

/// LiveKit's per-stream Prometheus accounting (reference §2.6), for one shard.
#[derive(Debug, Default)]
pub(crate) struct StatsMetrics {
    cells: HashMap<StatsLabels, StatsCell>,
}

impl StatsMetrics {
    /// Accounts one valid sample the way LiveKit's `TrackStats` does.
    pub(crate) fn record(&mut self, node: NodeId, key: &StatsKey, stat: &lk::AnalyticsStat) {
        let direction = key.stream_type;
        let media = key.track.then_some((key.track_source, key.track_type));
        let country = country_label(&key.country);
        let lookup = StatsLabelsRef { node, country, direction, media };
        let cell = match self.cells.get_mut(&lookup) {
            Some(cell) => cell,
            None => self
                .cells
                .entry(StatsLabels { node, country: country.into(), direction, media })
                .or_default(),
        };
        let (mut packets, mut bytes, mut retransmit_packets, mut retransmit_bytes) =
            (0u64, 0u64, 0u64, 0u64);
        let (mut nacks, mut plis, mut firs) = (0u64, 0u64, 0u64);
        for stream in &stat.streams {
            nacks += u64::from(stream.nacks);
            plis += u64::from(stream.plis);
            firs += u64::from(stream.firs);
            let stream_packets =
                u64::from(stream.primary_packets) + u64::from(stream.padding_packets);
            packets += stream_packets;
            bytes = bytes.saturating_add(stream.primary_bytes.saturating_add(stream.padding_bytes));
            match direction {
                // Downstream retransmissions are counted on their own ...
                Direction::Downstream => {
                    retransmit_packets += u64::from(stream.retransmit_packets);
                    retransmit_bytes = retransmit_bytes.saturating_add(stream.retransmit_bytes);
                }
                // ... upstream ones are folded into the initial transmission.
                Direction::Upstream => {
                    packets += u64::from(stream.retransmit_packets);
                    bytes = bytes.saturating_add(stream.retransmit_bytes);
                }
            }
            if media.is_some() {
                if stream_packets > 0 {
                    let total = stream_packets as f64;
                    observe_percent(&mut cell.packet_loss_percent, stream.packets_lost, total);
                    observe_percent(
                        &mut cell.out_of_order_percent,
                        stream.packets_out_of_order,
                        total,
                    );
                }
                cell.packet_loss_total += u64::from(stream.packets_lost);
                cell.out_of_order_total += u64::from(stream.packets_out_of_order);
                if stream.rtt > 0 {
                    cell.rtt_ms.observe(f64::from(stream.rtt));
                }
                if stream.jitter > 0 {
                    cell.jitter_us.observe(f64::from(stream.jitter));
                }
            }
        }
        cell.nacks += nacks;
        cell.plis += plis;
        cell.firs += firs;
        cell.packets_initial += packets;
        cell.bytes_initial = cell.bytes_initial.saturating_add(bytes);
        cell.packets_retransmit += retransmit_packets;
        cell.bytes_retransmit = cell.bytes_retransmit.saturating_add(retransmit_bytes);
    }

    /// Keeps only the cells of the nodes `keep` accepts.
    pub(crate) fn retain_nodes(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.cells.retain(|labels, _| keep(labels.node));
    }

    pub(crate) fn merge_into(&self, total: &mut HashMap<StatsLabels, StatsCell>) {
        for (labels, cell) in &self.cells {
            total.entry(labels.clone()).or_default().merge(cell);
        }
    }
}

/// Lifecycle metrics of one node, kept under the lifecycle lock.
#[derive(Debug, Default)]
pub(crate) struct LifecycleMetrics {
    pub(crate) rooms: i64,
    pub(crate) room_duration: Option<Histogram>,
    pub(crate) participants: i64,
    pub(crate) join_rtc_connected: u64,
    pub(crate) join_rtc_active: u64,
    /// Indexed by `TrackType` (AUDIO, VIDEO, DATA).
    pub(crate) tracks_published: [i64; 3],
    pub(crate) tracks_subscribed: [i64; 3],
    pub(crate) publish_attempts: [u64; 3],
    pub(crate) publish_successes: [u64; 3],
    pub(crate) subscribe_attempts: u64,
    pub(crate) subscribe_successes: u64,
    pub(crate) subscribe_failures: Vec<(String, u64)>,
}

impl LifecycleMetrics {
    pub(crate) fn observe_room_duration(&mut self, seconds: f64) {
        self.room_duration
            .get_or_insert_with(|| Histogram::new(ROOM_DURATION_BUCKETS))
            .observe(seconds);
    }

    pub(crate) fn subscribe_failure(&mut self, error: &str) {
        if let Some(entry) = self.subscribe_failures.iter_mut().find(|(label, _)| label == error) {
            entry.1 += 1;
        } else if self.subscribe_failures.len() < MAX_SUBSCRIBE_ERROR_LABELS {
            self.subscribe_failures.push((error.to_owned(), 1));
        } else if let Some(entry) =
            self.subscribe_failures.iter_mut().find(|(label, _)| label == "other")
        {
            entry.1 += 1;
        } else {
            self.subscribe_failures.push(("other".to_owned(), 1));
        }
    }
}

/// Index into the per-kind arrays for a `TrackType` number (unknown types count as DATA).
pub(crate) fn track_kind_index(track_type: i32) -> usize {
    match lk::TrackType::try_from(track_type) {
        Ok(lk::TrackType::Audio) => 0,
        Ok(lk::TrackType::Video) => 1,
        _ => 2,
    }
}
