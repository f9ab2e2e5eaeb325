//! Janus's media counters as interval samples.
//!
//! Janus reports counters that run from the start of a PeerConnection. A sample is the
//! difference between two consecutive reports of one handle, mid and direction, covering the time
//! between their timestamps, so Janus rates are as honest as any other SFU's. The rules:
//! - the first report of a PeerConnection whose `webrtcup` the adapter saw counts from zero at
//!   that `webrtcup`; any other first report (after a restart of the service, say) is only a
//!   baseline;
//! - a report no later than the baseline (repeated, or overtaken by a later one) changes nothing;
//! - bytes or packets lower than the baseline's mean new counters (a new PeerConnection): the
//!   report becomes the new baseline, never a negative sample;
//! - a gap longer than [`MAX_SAMPLE_MICROS`] (lost reports) becomes a new baseline too: a sample
//!   may cover at most what ingest accepts.
//!
//! Loss and NACK counters that went down (a receiver's report corrected) give zero, not a
//! negative difference.

use telemetry_core::Direction;

use crate::event::{MediaReport, Micros};

/// The longest interval one sample covers: what ingest accepts of any sample (5 minutes).
pub const MAX_SAMPLE_MICROS: u64 = 300 * 1_000_000;

/// One direction's counters at one report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// When.
    pub(crate) at: Micros,
    /// Bytes on the wire.
    pub(crate) bytes: u64,
    /// Packets on the wire.
    pub(crate) packets: u64,
    /// Packets lost.
    pub(crate) lost: u64,
    /// NACKs for the stream.
    pub(crate) nacks: u64,
}

impl Counts {
    /// The counters of `direction` in `report`: received by Janus for upstream, sent by Janus for
    /// downstream.
    pub(crate) fn of(report: &MediaReport, direction: Direction, at: Micros) -> Self {
        match direction {
            Direction::Upstream => Counts {
                at,
                bytes: report.bytes_received,
                packets: report.packets_received,
                lost: report.lost,
                nacks: report.nacks_sent,
            },
            Direction::Downstream => Counts {
                at,
                bytes: report.bytes_sent,
                packets: report.packets_sent,
                lost: report.lost_by_remote,
                nacks: report.nacks_received,
            },
        }
    }
}

/// What one report makes of a stream's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A sample: the differences, from `start` to `end`.
    Sample {
        /// Start of the interval.
        start: Micros,
        /// End of the interval (the report's time).
        end: Micros,
        /// Differences of the counters.
        delta: Counts,
    },
    /// The report is the new baseline, with no sample (a first report, or counters that started
    /// again, or a gap too long).
    Baseline {
        /// Whether counters went down (a new PeerConnection).
        reset: bool,
    },
    /// The report is not later than the baseline: nothing changes.
    Stale,
}

/// Steps a stream from its `baseline` (if any; `zero_at` is the `webrtcup` time its counters
/// start from, when known) to the counters `now`. Returns the step and the new baseline.
pub(crate) fn step(
    baseline: Option<Counts>,
    zero_at: Option<Micros>,
    now: Counts,
) -> (Step, Counts) {
    let baseline = match (baseline, zero_at) {
        (Some(baseline), _) => baseline,
        (None, Some(zero_at)) if zero_at < now.at => Counts { at: zero_at, ..Counts::default() },
        (None, _) => return (Step::Baseline { reset: false }, now),
    };
    if now.at <= baseline.at {
        return (Step::Stale, baseline);
    }
    if now.bytes < baseline.bytes || now.packets < baseline.packets {
        return (Step::Baseline { reset: true }, now);
    }
    if now.at - baseline.at > MAX_SAMPLE_MICROS {
        return (Step::Baseline { reset: false }, now);
    }
    let delta = Counts {
        at: now.at,
        bytes: now.bytes - baseline.bytes,
        packets: now.packets - baseline.packets,
        lost: now.lost.saturating_sub(baseline.lost),
        nacks: now.nacks.saturating_sub(baseline.nacks),
    };
    (Step::Sample { start: baseline.at, end: now.at, delta }, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(at: Micros, bytes: u64, packets: u64) -> Counts {
        Counts { at, bytes, packets, lost: 0, nacks: 0 }
    }

    #[test]
    fn consecutive_reports_make_a_sample_over_the_time_between_them() {
        let (step_made, baseline) = step(Some(counts(1_000, 100, 1)), None, counts(3_000, 600, 6));
        assert_eq!(
            step_made,
            Step::Sample { start: 1_000, end: 3_000, delta: counts(3_000, 500, 5) }
        );
        assert_eq!(baseline, counts(3_000, 600, 6));
    }

    #[test]
    fn a_first_report_counts_from_webrtcup_when_known_else_is_a_baseline() {
        let (made, _) = step(None, Some(500), counts(2_500, 100, 2));
        assert_eq!(made, Step::Sample { start: 500, end: 2_500, delta: counts(2_500, 100, 2) });
        let (made, baseline) = step(None, None, counts(2_500, 100, 2));
        assert_eq!(made, Step::Baseline { reset: false });
        assert_eq!(baseline, counts(2_500, 100, 2));
    }

    #[test]
    fn repeated_older_reset_and_distant_reports_make_no_sample() {
        let base = counts(10_000, 1_000, 10);
        assert_eq!(step(Some(base), None, counts(10_000, 1_000, 10)).0, Step::Stale);
        assert_eq!(step(Some(base), None, counts(9_000, 900, 9)), (Step::Stale, base));
        assert_eq!(step(Some(base), None, counts(12_000, 50, 1)).0, Step::Baseline { reset: true });
        assert_eq!(
            step(Some(base), None, counts(10_000 + MAX_SAMPLE_MICROS + 1, 5_000, 50)).0,
            Step::Baseline { reset: false }
        );
    }

    #[test]
    fn loss_and_nacks_that_go_down_give_zero() {
        let base = Counts { at: 0, bytes: 0, packets: 0, lost: 5, nacks: 7 };
        let now = Counts { at: 1, bytes: 1, packets: 1, lost: 3, nacks: 9 };
        let (Step::Sample { delta, .. }, _) = step(Some(base), None, now) else {
            panic!("a sample")
        };
        assert_eq!((delta.lost, delta.nacks), (0, 2));
    }
}
