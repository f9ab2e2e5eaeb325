//! Coalescing: the samples of one track and direction between two flushes become one
//! `AnalyticsStat` with exactly one `AnalyticsStream`, by the rules of LiveKit's `coalesce`
//! (reference §2.7), plus the honest-rate window of DESIGN.md ("Honest rates").
//!
//! Unlike LiveKit, which keeps every raw sample until the flush, a `TrackAccumulator` folds each
//! sample in as it arrives. Every rule of the table is a fold (sums, maxima, first-then-add video
//! layers keeping the highest id, last mime), except the median score, so only the scores are
//! kept. The state per track therefore stays small however often a track reports.

use compact_str::CompactString;
use livekit_protocol as lk;
use smallvec::SmallVec;

use crate::quality::detect::SampleReading;
use crate::time::UnixMillis;

/// Counters summed over the valid samples of a window, unsaturated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Sum of `primary_packets`.
    pub primary_packets: u64,
    /// Sum of `primary_bytes`.
    pub primary_bytes: u64,
    /// Sum of `retransmit_packets`.
    pub retransmit_packets: u64,
    /// Sum of `retransmit_bytes`.
    pub retransmit_bytes: u64,
    /// Sum of `padding_packets`.
    pub padding_packets: u64,
    /// Sum of `padding_bytes`.
    pub padding_bytes: u64,
    /// Sum of `packets_lost`.
    pub packets_lost: u64,
    /// Sum of `packets_out_of_order`.
    pub packets_out_of_order: u64,
    /// Sum of `frames`.
    pub frames: u64,
    /// Sum of `nacks`.
    pub nacks: u64,
    /// Sum of `plis`.
    pub plis: u64,
    /// Sum of `firs`.
    pub firs: u64,
}

impl StreamTotals {
    /// Adds one stream's counters.
    pub fn add_stream(&mut self, stream: &lk::AnalyticsStream) {
        self.primary_packets =
            self.primary_packets.saturating_add(u64::from(stream.primary_packets));
        self.primary_bytes = self.primary_bytes.saturating_add(stream.primary_bytes);
        self.retransmit_packets =
            self.retransmit_packets.saturating_add(u64::from(stream.retransmit_packets));
        self.retransmit_bytes = self.retransmit_bytes.saturating_add(stream.retransmit_bytes);
        self.padding_packets =
            self.padding_packets.saturating_add(u64::from(stream.padding_packets));
        self.padding_bytes = self.padding_bytes.saturating_add(stream.padding_bytes);
        self.packets_lost = self.packets_lost.saturating_add(u64::from(stream.packets_lost));
        self.packets_out_of_order =
            self.packets_out_of_order.saturating_add(u64::from(stream.packets_out_of_order));
        self.frames = self.frames.saturating_add(u64::from(stream.frames));
        self.nacks = self.nacks.saturating_add(u64::from(stream.nacks));
        self.plis = self.plis.saturating_add(u64::from(stream.plis));
        self.firs = self.firs.saturating_add(u64::from(stream.firs));
    }

    /// Adds another window's totals.
    pub fn add(&mut self, other: &StreamTotals) {
        self.primary_packets = self.primary_packets.saturating_add(other.primary_packets);
        self.primary_bytes = self.primary_bytes.saturating_add(other.primary_bytes);
        self.retransmit_packets = self.retransmit_packets.saturating_add(other.retransmit_packets);
        self.retransmit_bytes = self.retransmit_bytes.saturating_add(other.retransmit_bytes);
        self.padding_packets = self.padding_packets.saturating_add(other.padding_packets);
        self.padding_bytes = self.padding_bytes.saturating_add(other.padding_bytes);
        self.packets_lost = self.packets_lost.saturating_add(other.packets_lost);
        self.packets_out_of_order =
            self.packets_out_of_order.saturating_add(other.packets_out_of_order);
        self.frames = self.frames.saturating_add(other.frames);
        self.nacks = self.nacks.saturating_add(other.nacks);
        self.plis = self.plis.saturating_add(other.plis);
        self.firs = self.firs.saturating_add(other.firs);
    }

    /// Returns every byte on the wire: primary, retransmitted and padding.
    pub fn wire_bytes(&self) -> u64 {
        self.primary_bytes.saturating_add(self.retransmit_bytes).saturating_add(self.padding_bytes)
    }

    /// Returns every packet on the wire: primary, retransmitted and padding.
    pub fn wire_packets(&self) -> u64 {
        self.primary_packets
            .saturating_add(self.retransmit_packets)
            .saturating_add(self.padding_packets)
    }
}

/// What one sample contributes, worked out once per `TrackStats` call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleSummary {
    /// False if any counter is negative when read as signed (LiveKit's validity rule).
    pub(crate) valid: bool,
    /// Sums over the sample's streams (simulcast streams merged).
    pub(crate) totals: StreamTotals,
    /// `[earliest start, latest end]` over the streams that carry both times.
    pub(crate) own_interval: Option<(UnixMillis, UnixMillis)>,
    /// What the sample says about call quality.
    pub(crate) reading: SampleReading,
}

impl SampleSummary {
    pub(crate) fn of(stat: &lk::AnalyticsStat) -> Self {
        let mut totals = StreamTotals::default();
        let mut own_interval: Option<(UnixMillis, UnixMillis)> = None;
        let mut valid = true;
        let (mut jitter_us, mut rtt_ms) = (0, 0);
        for stream in &stat.streams {
            valid &= is_valid_stream(stream);
            jitter_us = jitter_us.max(stream.jitter);
            rtt_ms = rtt_ms.max(stream.rtt);
            totals.add_stream(stream);
            let start = stream.start_time.as_ref().and_then(UnixMillis::from_timestamp);
            let end = stream.end_time.as_ref().and_then(UnixMillis::from_timestamp);
            if let (Some(start), Some(end)) = (start, end) {
                let (start, end) = if end < start { (end, start) } else { (start, end) };
                own_interval = Some(match own_interval {
                    None => (start, end),
                    Some((s, e)) => (s.min(start), e.max(end)),
                });
            }
        }
        let reading = SampleReading {
            packets: totals.primary_packets.saturating_add(totals.retransmit_packets),
            lost: totals.packets_lost,
            jitter_us,
            rtt_ms,
            score: stat.score,
        };
        Self { valid, totals, own_interval, reading }
    }
}

/// Returns false if any stream or layer counter of `stat`, read as a signed 32-bit number (64-bit
/// for bytes), is negative: the sign of a delta computed from a counter that went backwards.
pub fn is_valid_sample(stat: &lk::AnalyticsStat) -> bool {
    stat.streams.iter().all(is_valid_stream)
}

fn is_valid_stream(stream: &lk::AnalyticsStream) -> bool {
    fn ok32(value: u32) -> bool {
        value <= i32::MAX as u32
    }
    fn ok64(value: u64) -> bool {
        value <= i64::MAX as u64
    }
    ok32(stream.primary_packets)
        && ok64(stream.primary_bytes)
        && ok32(stream.retransmit_packets)
        && ok64(stream.retransmit_bytes)
        && ok32(stream.padding_packets)
        && ok64(stream.padding_bytes)
        && ok32(stream.packets_lost)
        && ok32(stream.packets_out_of_order)
        && ok32(stream.frames)
        && ok32(stream.nacks)
        && ok32(stream.plis)
        && ok32(stream.firs)
        && stream
            .video_layers
            .iter()
            .all(|layer| ok32(layer.packets) && ok64(layer.bytes) && ok32(layer.frames))
}

/// The running fold of one track and direction's samples since the last flush.
///
/// Kept small and free of heap allocations in the usual case (scores and mime inline), since
/// one exists per track and every `TrackStats` call touches one.
#[derive(Debug)]
pub(crate) struct TrackAccumulator {
    samples: u32,
    invalid_samples: u32,
    rtt_max: u32,
    jitter_max: u32,
    totals: StreamTotals,
    highest_layer: LayerTotals,
    scores: SmallVec<[f32; 8]>,
    mime: CompactString,
    rates: RateTracker,
}

/// The sums of the highest video layer seen; `layer == NO_LAYER` when none was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LayerTotals {
    layer: i32,
    packets: u64,
    bytes: u64,
    frames: u64,
}

const NO_LAYER: i32 = i32::MIN;

impl Default for TrackAccumulator {
    fn default() -> Self {
        Self {
            samples: 0,
            invalid_samples: 0,
            rtt_max: 0,
            jitter_max: 0,
            totals: StreamTotals::default(),
            highest_layer: LayerTotals { layer: NO_LAYER, packets: 0, bytes: 0, frames: 0 },
            scores: SmallVec::new(),
            mime: CompactString::default(),
            rates: RateTracker::default(),
        }
    }
}

impl TrackAccumulator {
    /// Returns the number of samples recorded since the last flush, invalid ones included.
    pub(crate) fn samples(&self) -> u32 {
        self.samples
    }

    /// The longest interval one of its samples covered (0 without samples with an interval).
    pub(crate) fn max_interval_ms(&self) -> i64 {
        self.rates.max_interval_ms
    }

    /// Folds one sample in; `interval` is the time the sample covers (see
    /// `crate::rates::sample_interval`).
    pub(crate) fn record(
        &mut self,
        stat: &lk::AnalyticsStat,
        summary: &SampleSummary,
        interval: (UnixMillis, UnixMillis),
    ) {
        self.samples += 1;
        // Last value wins, whether or not the sample is valid (LiveKit takes the last sample's).
        if self.mime != stat.mime {
            self.mime = CompactString::from(stat.mime.as_str());
        }
        if !summary.valid {
            self.invalid_samples += 1;
            return;
        }
        if stat.score > 0.0 {
            self.scores.push(stat.score);
        }
        self.totals.add(&summary.totals);
        for stream in &stat.streams {
            self.rtt_max = self.rtt_max.max(stream.rtt);
            self.jitter_max = self.jitter_max.max(stream.jitter);
            for layer in &stream.video_layers {
                let highest = &mut self.highest_layer;
                if highest.layer == layer.layer {
                    highest.packets += u64::from(layer.packets);
                    highest.bytes = highest.bytes.saturating_add(layer.bytes);
                    highest.frames += u64::from(layer.frames);
                } else if highest.layer < layer.layer {
                    // A higher layer replaces the kept one: only the highest survives anyway.
                    *highest = LayerTotals {
                        layer: layer.layer,
                        packets: u64::from(layer.packets),
                        bytes: layer.bytes,
                        frames: u64::from(layer.frames),
                    };
                }
            }
        }
        self.rates.record(interval.0.0, interval.1.0, summary.totals.wire_bytes());
    }

    /// Produces the coalesced result: totals, maxima, score statistics and rate window.
    pub(crate) fn finish(mut self) -> Coalesced {
        let (score, min_score, median_score) = score_statistics(&mut self.scores);
        let window = self.rates.finish(self.totals.wire_bytes());
        let layer = self.highest_layer;
        let mos = window_mos(&self.mime, &self.totals, self.jitter_max, self.rtt_max);
        Coalesced {
            totals: self.totals,
            rtt_max: self.rtt_max,
            jitter_max: self.jitter_max,
            highest_layer: (layer.layer != NO_LAYER).then(|| lk::AnalyticsVideoLayer {
                layer: layer.layer,
                packets: saturate(layer.packets),
                bytes: layer.bytes,
                frames: saturate(layer.frames),
            }),
            score,
            min_score,
            median_score,
            mime: self.mime,
            samples: self.samples,
            invalid_samples: self.invalid_samples,
            window,
            mos,
        }
    }
}

/// The E-model MOS estimate of an audio window ([`crate::quality::mos`]): from the window's
/// loss rate, its highest jitter (microseconds) and highest round-trip time (half of it as the
/// one-way delay), with the codec of its mime. An audio codec without E-model parameters is rated
/// as Opus (WebRTC's audio is Opus but for G.711; `audio/red` carries Opus). `None` for video,
/// data and signalling, and for a window without packets.
pub fn window_mos(
    mime: &str,
    totals: &StreamTotals,
    jitter_max_us: u32,
    rtt_max_ms: u32,
) -> Option<f64> {
    use crate::quality::mos::{Codec, Conditions, estimate};
    let is_audio = mime.get(..6).is_some_and(|prefix| prefix.eq_ignore_ascii_case("audio/"));
    if !is_audio {
        return None;
    }
    let expected = totals.primary_packets.saturating_add(totals.packets_lost);
    if expected == 0 {
        return None;
    }
    let codec = Codec::from_mime(mime).unwrap_or(Codec::OPUS);
    let loss_percent = totals.packets_lost as f64 * 100.0 / expected as f64;
    let conditions = Conditions::from_rtt(
        f64::from(rtt_max_ms),
        loss_percent,
        f64::from(jitter_max_us) / 1000.0,
    );
    Some(estimate(&codec, &conditions).mos)
}

fn saturate(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Mean, minimum and median of the scores above zero; zeros when there are none.
fn score_statistics(scores: &mut [f32]) -> (f32, f32, f32) {
    if scores.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let sum: f64 = scores.iter().map(|&score| f64::from(score)).sum();
    let mean = (sum / scores.len() as f64) as f32;
    scores.sort_unstable_by(f32::total_cmp);
    let middle = scores.len() / 2;
    let median = if scores.len() % 2 == 1 {
        scores[middle]
    } else {
        ((f64::from(scores[middle - 1]) + f64::from(scores[middle])) / 2.0) as f32
    };
    (mean, scores[0], median)
}

/// The result of coalescing one track and direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Coalesced {
    /// Sums over the valid samples, unsaturated.
    pub totals: StreamTotals,
    /// Maximum RTT over every stream of every valid sample.
    pub rtt_max: u32,
    /// Maximum jitter over every stream of every valid sample.
    pub jitter_max: u32,
    /// The highest video layer, its counters summed over its occurrences.
    pub highest_layer: Option<lk::AnalyticsVideoLayer>,
    /// Mean of the scores above zero.
    pub score: f32,
    /// Minimum of the scores above zero.
    pub min_score: f32,
    /// Median of the scores above zero.
    pub median_score: f32,
    /// The last sample's mime.
    pub mime: CompactString,
    /// Samples folded in, invalid ones included.
    pub samples: u32,
    /// Samples skipped because a counter was negative.
    pub invalid_samples: u32,
    /// The time covered and the honest rates; `None` if no valid sample arrived.
    pub window: Option<RateWindow>,
    /// Audio: the E-model MOS estimate (1 to 4.5) from the window's loss, highest jitter and RTT
    /// and its codec; `None` for other streams and windows without packets.
    pub mos: Option<f64>,
}

impl Coalesced {
    /// Returns the single merged `AnalyticsStream`, by LiveKit's rules: counters summed (and
    /// saturated at `u32::MAX` where the proto field is 32-bit), RTT and jitter maxima, no SSRC,
    /// only the highest video layer, the window's start and end.
    pub fn stream(&self) -> lk::AnalyticsStream {
        let totals = &self.totals;
        lk::AnalyticsStream {
            ssrc: 0,
            primary_packets: saturate(totals.primary_packets),
            primary_bytes: totals.primary_bytes,
            retransmit_packets: saturate(totals.retransmit_packets),
            retransmit_bytes: totals.retransmit_bytes,
            padding_packets: saturate(totals.padding_packets),
            padding_bytes: totals.padding_bytes,
            packets_lost: saturate(totals.packets_lost),
            frames: saturate(totals.frames),
            rtt: self.rtt_max,
            jitter: self.jitter_max,
            nacks: saturate(totals.nacks),
            plis: saturate(totals.plis),
            firs: saturate(totals.firs),
            video_layers: self.highest_layer.into_iter().collect(),
            start_time: self.window.map(|window| window.start.to_timestamp()),
            end_time: self.window.map(|window| window.end.to_timestamp()),
            packets_out_of_order: saturate(totals.packets_out_of_order),
        }
    }
}

/// The honest rates of a coalesced window (DESIGN.md, "Honest rates").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateWindow {
    /// Start of the earliest sample interval.
    pub start: UnixMillis,
    /// End of the latest sample interval.
    pub end: UnixMillis,
    /// Milliseconds actually covered by sample intervals (their union; gaps excluded).
    pub covered_ms: i64,
    /// Bits per second over the covered time: every byte of the window, divided by `covered_ms`.
    pub avg_bps: f64,
    /// The highest per-sample bit rate: the finest resolution the samples allow.
    pub peak_bps: f64,
    /// The longest sample interval of the window: a spike shorter than this can be averaged
    /// away inside one sample, so `peak_bps` is exact only at this resolution.
    pub resolution_ms: i64,
}

/// Tracks covered time, per-sample peak rate and resolution, one sample at a time, without heap
/// allocation while samples arrive in order and back to back.
#[derive(Debug)]
struct RateTracker {
    /// Earliest start and latest end; `first_start > last_end` while empty.
    first_start: i64,
    last_end: i64,
    /// The latest covered segment, extended while samples arrive in order.
    current: Option<(i64, i64)>,
    /// Earlier disjoint segments, sorted, all before `current`: filled only by gaps and
    /// out-of-order samples.
    closed: Vec<(i64, i64)>,
    peak_bps: f64,
    /// The latest sample with a non-zero interval, as `(start, end, bytes)`; a zero-length
    /// sample's bytes join it, since a rate over no time does not exist.
    open: Option<(i64, i64, u64)>,
    /// Bytes of zero-length samples that arrived before any sample with an interval.
    pending_bytes: u64,
    max_interval_ms: i64,
}

impl Default for RateTracker {
    fn default() -> Self {
        Self {
            first_start: i64::MAX,
            last_end: i64::MIN,
            current: None,
            closed: Vec::new(),
            peak_bps: 0.0,
            open: None,
            pending_bytes: 0,
            max_interval_ms: 0,
        }
    }
}

impl RateTracker {
    fn record(&mut self, start: i64, end: i64, bytes: u64) {
        let end = end.max(start);
        self.first_start = self.first_start.min(start);
        self.last_end = self.last_end.max(end);
        if end == start {
            match &mut self.open {
                Some((_, _, open_bytes)) => *open_bytes = open_bytes.saturating_add(bytes),
                None => self.pending_bytes = self.pending_bytes.saturating_add(bytes),
            }
            return;
        }
        self.close_open();
        self.open =
            Some((start, end, bytes.saturating_add(std::mem::take(&mut self.pending_bytes))));
        self.max_interval_ms = self.max_interval_ms.max(end - start);
        self.cover(start, end);
    }

    fn close_open(&mut self) {
        if let Some((start, end, bytes)) = self.open.take() {
            let bps = bytes as f64 * 8000.0 / (end - start) as f64;
            self.peak_bps = self.peak_bps.max(bps);
        }
    }

    fn cover(&mut self, start: i64, end: i64) {
        match &mut self.current {
            None => self.current = Some((start, end)),
            // In order and touching: extend.
            Some(current) if current.0 <= start && start <= current.1 => {
                current.1 = current.1.max(end)
            }
            // In order after a gap: the current segment is final.
            Some(current) if start > current.1 => {
                self.closed.push(*current);
                *current = (start, end);
            }
            // Out of order: merge everything, then keep the last segment as current.
            Some(current) => {
                self.closed.push(*current);
                self.closed.push((start, end));
                self.closed.sort_unstable();
                let mut merged: Vec<(i64, i64)> = Vec::with_capacity(self.closed.len());
                for &(s, e) in &self.closed {
                    match merged.last_mut() {
                        Some(last) if s <= last.1 => last.1 = last.1.max(e),
                        _ => merged.push((s, e)),
                    }
                }
                *current = merged.pop().expect("at least one segment");
                self.closed = merged;
            }
        }
    }

    fn finish(mut self, total_bytes: u64) -> Option<RateWindow> {
        self.close_open();
        if self.first_start > self.last_end {
            return None;
        }
        let covered_ms: i64 =
            self.closed.iter().chain(self.current.as_ref()).map(|&(start, end)| end - start).sum();
        let avg_bps =
            if covered_ms > 0 { total_bytes as f64 * 8000.0 / covered_ms as f64 } else { 0.0 };
        Some(RateWindow {
            start: UnixMillis(self.first_start),
            end: UnixMillis(self.last_end),
            covered_ms,
            avg_bps,
            peak_bps: self.peak_bps,
            resolution_ms: self.max_interval_ms,
        })
    }
}

#[cfg(test)]
mod tests;
