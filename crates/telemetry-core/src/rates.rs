//! Honest rates: the interval a sample covers, and node-level byte and packet series in fixed
//! 1-second buckets fed by spreading every sample evenly over its interval.
//!
//! LiveKit adds a sample's bytes to node counters at the moment the sample arrives, so a
//! 5-minute batch of data-channel bytes shows as a spike in a 5-second rate window (reference
//! §2.9). Here a sample's bytes land in the seconds they were actually sent (as far as the sample
//! tells), so a late batch revises the past instead of inventing a spike now, and a burst reported
//! at 1-second resolution keeps its height.

use std::collections::VecDeque;

use crate::keys::Direction;
use crate::time::UnixMillis;

/// The longest interval a single sample is spread over. A longer one (a data channel idle for a
/// day, then one message) is spread over its last 24 hours: beyond that the bytes' whereabouts are
/// unknowable anyway, and the bound keeps the cost of one sample bounded.
pub const MAX_SPREAD_MILLIS: i64 = 24 * 3600 * 1000;

/// Resolves the interval `[start, end]` a sample covers (DESIGN.md, "Honest rates"):
/// - its own stream start and end times when it carries them;
/// - otherwise from the end of the previous sample of the same participant, track and direction
///   (`previous_end`) to the call time `at`;
/// - for a first sample, from `first_start` (the stats worker's creation, at most one flush
///   interval before `at`) to `at`.
pub(crate) fn sample_interval(
    own: Option<(UnixMillis, UnixMillis)>,
    previous_end: Option<UnixMillis>,
    first_start: UnixMillis,
    at: UnixMillis,
) -> (UnixMillis, UnixMillis) {
    if let Some(own) = own {
        return own;
    }
    let start = previous_end.unwrap_or(first_start);
    if start > at { (at, at) } else { (start, at) }
}

/// Calls `part(second, amount)` for every 1-second bucket that `[start_ms, end_ms)` overlaps,
/// splitting `total` in proportion to the overlap. The parts are whole numbers that add up to
/// `total` exactly (the last bucket takes the rounding). A zero-length interval puts everything in
/// the bucket of `end_ms`.
pub fn spread(start_ms: i64, end_ms: i64, total: u64, mut part: impl FnMut(i64, u64)) {
    let mut given = 0u64;
    let mut last_second = None;
    for_each_overlap(start_ms, end_ms, |second, fraction| {
        last_second = Some(second);
        if fraction < 1.0 {
            let amount = share(total, fraction).min(total - given);
            given += amount;
            if amount > 0 {
                part(second, amount);
            }
        } else if total > given {
            part(second, total - given);
        }
    });
    debug_assert!(last_second.is_some());
}

/// The whole part of `total * fraction`, tolerant of the last bit of floating-point error.
fn share(total: u64, fraction: f64) -> u64 {
    (total as f64 * fraction + 1e-6) as u64
}

/// Calls `f(second, fraction)` for each 1-second bucket that `[start_ms, end_ms)` overlaps, with
/// the fraction of the interval inside it; the last bucket gets `1.0` ("the rest"). A zero-length
/// interval is one call with `1.0` for the bucket of `end_ms`. Intervals longer than
/// [`MAX_SPREAD_MILLIS`] are cut to their last part.
fn for_each_overlap(start_ms: i64, end_ms: i64, mut f: impl FnMut(i64, f64)) {
    let end_ms = end_ms.max(start_ms);
    let start_ms = start_ms.max(end_ms - MAX_SPREAD_MILLIS);
    let length = end_ms - start_ms;
    if length == 0 {
        f(end_ms.div_euclid(1000), 1.0);
        return;
    }
    let first = start_ms.div_euclid(1000);
    let last = (end_ms - 1).div_euclid(1000);
    let per_ms = 1.0 / length as f64;
    for second in first..last {
        let overlap = ((second + 1) * 1000).min(end_ms) - (second * 1000).max(start_ms);
        f(second, overlap as f64 * per_ms);
    }
    f(last, 1.0);
}

/// Bytes and packets in one second, in (upstream) and out (downstream).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateCell {
    /// Bytes received by the SFU.
    pub bytes_in: u64,
    /// Bytes sent by the SFU.
    pub bytes_out: u64,
    /// Packets received by the SFU.
    pub packets_in: u64,
    /// Packets sent by the SFU.
    pub packets_out: u64,
}

impl RateCell {
    /// Adds another cell (each counter saturates at `u64::MAX`: callers' counters are theirs to
    /// choose, and a node's second of them must not wrap or panic).
    pub fn add(&mut self, other: &RateCell) {
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.packets_in = self.packets_in.saturating_add(other.packets_in);
        self.packets_out = self.packets_out.saturating_add(other.packets_out);
    }

    fn is_empty(&self) -> bool {
        *self == RateCell::default()
    }
}

/// Rate cells for consecutive seconds, indexed without hashing; what one shard accumulates for
/// one node between two drains.
#[derive(Debug, Default)]
pub(crate) struct RateRing {
    base_second: i64,
    cells: VecDeque<RateCell>,
}

/// A ring never grows over a gap longer than this; it spills its cells instead.
const MAX_RING_GAP_SECONDS: i64 = 600;

impl RateRing {
    /// Spreads one sample's bytes and packets over `[start, end)`.
    pub(crate) fn add(
        &mut self,
        start: UnixMillis,
        end: UnixMillis,
        bytes: u64,
        packets: u64,
        direction: Direction,
        spilled: &mut Vec<(i64, RateCell)>,
    ) {
        if bytes == 0 && packets == 0 {
            return;
        }
        let end_ms = end.0.max(start.0);
        let start_ms = start.0.max(end_ms - MAX_SPREAD_MILLIS);
        let first = start_ms.div_euclid(1000);
        let last =
            if end_ms > start_ms { (end_ms - 1).div_euclid(1000) } else { end_ms.div_euclid(1000) };
        self.make_room(first, last, spilled);
        let base = self.base_second;
        let cells = &mut self.cells;
        let (mut given_bytes, mut given_packets) = (0u64, 0u64);
        for_each_overlap(start_ms, end_ms, |second, fraction| {
            let (add_bytes, add_packets) = if fraction < 1.0 {
                (
                    share(bytes, fraction).min(bytes - given_bytes),
                    share(packets, fraction).min(packets - given_packets),
                )
            } else {
                (bytes - given_bytes, packets - given_packets)
            };
            given_bytes += add_bytes;
            given_packets += add_packets;
            let cell = &mut cells[(second - base) as usize];
            // Saturating, as `RateCell::add`.
            match direction {
                Direction::Upstream => {
                    cell.bytes_in = cell.bytes_in.saturating_add(add_bytes);
                    cell.packets_in = cell.packets_in.saturating_add(add_packets);
                }
                Direction::Downstream => {
                    cell.bytes_out = cell.bytes_out.saturating_add(add_bytes);
                    cell.packets_out = cell.packets_out.saturating_add(add_packets);
                }
            }
        });
    }

    fn make_room(&mut self, first: i64, last: i64, spilled: &mut Vec<(i64, RateCell)>) {
        if self.cells.is_empty() {
            self.base_second = first;
        } else {
            let current_last = self.base_second + self.cells.len() as i64 - 1;
            let gap = (self.base_second - last).max(first - current_last);
            if gap > MAX_RING_GAP_SECONDS {
                self.drain_into(spilled);
                self.base_second = first;
            }
        }
        while first < self.base_second {
            self.cells.push_front(RateCell::default());
            self.base_second -= 1;
        }
        while self.base_second + (self.cells.len() as i64) <= last {
            self.cells.push_back(RateCell::default());
        }
    }

    /// Moves every non-empty cell out, as `(second, cell)`.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<(i64, RateCell)>) {
        let base = self.base_second;
        for (offset, cell) in self.cells.drain(..).enumerate() {
            if !cell.is_empty() {
                out.push((base + offset as i64, cell));
            }
        }
    }
}

/// One point of a node's rate series: the average over `[at, at + window)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePoint {
    /// Start of the window.
    pub at: UnixMillis,
    /// Bits per second received.
    pub bps_in: f64,
    /// Bits per second sent.
    pub bps_out: f64,
    /// Packets per second received.
    pub pps_in: f64,
    /// Packets per second sent.
    pub pps_out: f64,
}

/// Averages 1-second cells into windows of `window_seconds`, aligned to multiples of the window
/// since the epoch, one point per window from the window holding `from` up to (excluding) the
/// window starting at or after `to`; windows without data are zero.
///
/// `cells` must be sorted by second; seconds outside `[from, to)` are ignored.
pub fn window_points(
    cells: impl IntoIterator<Item = (i64, RateCell)>,
    from: UnixMillis,
    to: UnixMillis,
    window_seconds: i64,
) -> Vec<RatePoint> {
    let window_seconds = window_seconds.max(1);
    let first_window = from.as_secs().div_euclid(window_seconds);
    let end_second = to.0.div_euclid(1000) + i64::from(to.0.rem_euclid(1000) != 0);
    let last_window = (end_second - 1).div_euclid(window_seconds);
    if last_window < first_window {
        return Vec::new();
    }
    let mut sums = vec![RateCell::default(); (last_window - first_window + 1) as usize];
    for (second, cell) in cells {
        if second < from.as_secs() || second >= end_second {
            continue;
        }
        sums[(second.div_euclid(window_seconds) - first_window) as usize].add(&cell);
    }
    let seconds = window_seconds as f64;
    sums.iter()
        .enumerate()
        .map(|(index, sum)| RatePoint {
            at: UnixMillis::from_secs((first_window + index as i64) * window_seconds),
            bps_in: sum.bytes_in as f64 * 8.0 / seconds,
            bps_out: sum.bytes_out as f64 * 8.0 / seconds,
            pps_in: sum.packets_in as f64 / seconds,
            pps_out: sum.packets_out as f64 / seconds,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread_to_vec(start: i64, end: i64, total: u64) -> Vec<(i64, u64)> {
        let mut parts = Vec::new();
        spread(start, end, total, |second, amount| parts.push((second, amount)));
        parts
    }

    #[test]
    fn spreading_is_proportional_and_exact() {
        assert_eq!(
            spread_to_vec(0, 5000, 500),
            vec![(0, 100), (1, 100), (2, 100), (3, 100), (4, 100)]
        );
        assert_eq!(spread_to_vec(500, 1500, 10), vec![(0, 5), (1, 5)]);
        assert_eq!(spread_to_vec(2000, 2000, 7), vec![(2, 7)]);
        let parts = spread_to_vec(123, 9876, 1_000_003);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 1_000_003);
    }

    #[test]
    fn ring_spills_instead_of_growing_over_a_long_gap() {
        let mut ring = RateRing::default();
        let mut spilled = Vec::new();
        ring.add(UnixMillis(0), UnixMillis(1000), 10, 1, Direction::Upstream, &mut spilled);
        ring.add(
            UnixMillis(3_600_000),
            UnixMillis(3_601_000),
            20,
            2,
            Direction::Downstream,
            &mut spilled,
        );
        assert_eq!(
            spilled,
            vec![(0, RateCell { bytes_in: 10, packets_in: 1, ..RateCell::default() })]
        );
        let mut drained = Vec::new();
        ring.drain_into(&mut drained);
        assert_eq!(
            drained,
            vec![(3600, RateCell { bytes_out: 20, packets_out: 2, ..RateCell::default() })]
        );
    }

    /// Found by the `core_calls` fuzz target: two samples of huge counters in one second
    /// overflowed the cell. Cells saturate instead, in the ring and when cells are added.
    #[test]
    fn cells_saturate_at_the_counters_maximum() {
        let mut ring = RateRing::default();
        let mut spilled = Vec::new();
        for _ in 0..2 {
            let (start, end) = (UnixMillis(0), UnixMillis(1000));
            ring.add(start, end, u64::MAX - 1, u64::MAX, Direction::Upstream, &mut spilled);
        }
        let mut drained = Vec::new();
        ring.drain_into(&mut drained);
        let full = RateCell { bytes_in: u64::MAX, packets_in: u64::MAX, ..RateCell::default() };
        assert_eq!(drained, vec![(0, full)]);
        let mut sum = full;
        sum.add(&full);
        assert_eq!(sum, full);
    }

    #[test]
    fn window_points_average_over_the_window() {
        let cells = (0..10).map(|s| (s, RateCell { bytes_in: 125_000, ..RateCell::default() }));
        let points = window_points(cells, UnixMillis(0), UnixMillis(10_000), 5);
        assert_eq!(points.len(), 2);
        assert!(points.iter().all(|p| (p.bps_in - 1_000_000.0).abs() < 1e-6));
    }

    proptest::proptest! {
        #[test]
        fn spread_parts_always_add_up(start in -10_000i64..10_000, length in 0i64..400_000, total in 0u64..u64::MAX / 2) {
            let parts = spread_to_vec(start, start + length, total);
            proptest::prop_assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), total);
            for window in parts.windows(2) {
                proptest::prop_assert!(window[0].0 < window[1].0);
            }
        }
    }
}
