//! The issue detectors: one hysteresis state machine per issue kind ([`Detector`]), five of them
//! per media track and direction ([`TrackQuality`]), fed one sample interval at a time.
//!
//! A detector sees each sample as bad (with a value), clean, or unknown (the sample says nothing
//! about the condition, such as a loss rate of a sample without packets; it changes nothing).
//! It opens when the bad run, from the start of its first bad sample to the end of the latest,
//! covers `open_after`; it closes when the clean run, from the start of the first clean sample
//! after the issue, covers `close_after`. Both are measured in sample time, so a track reporting
//! every second and one reporting every 30 seconds open and close within one sample interval of
//! each other. A detector is 24 bytes; a track's five, with their flags, 136. A clean sample of a track
//! without trouble costs a few comparisons ([`Thresholds::any_bad`]).
//!
//! `no_media` is also judged without samples: a published, unmuted upstream track that sends no
//! sample at all for `open_after` opens it ([`TrackQuality::check_silence`]), checked by the
//! stats flush, which visits every track anyway, in the worker's sample time (so the sample
//! path pays nothing for it).

use crate::quality::{DetectorState, IssueKind, QualityConfig, TrackQualityState};

/// "No time": the detector's runs are empty.
const NONE: i64 = i64::MIN;

/// One kind's hysteresis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Detector {
    /// Start of the first bad sample of the current bad run (or of the open issue).
    bad_since: i64,
    /// Start of the first clean sample since the issue opened.
    clean_since: i64,
    /// The worst value of the bad run (of the whole issue once open).
    worst: f32,
    open: bool,
}

impl Default for Detector {
    fn default() -> Self {
        Self { bad_since: NONE, clean_since: NONE, worst: 0.0, open: false }
    }
}

/// What one sample says about one condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Reading {
    /// The condition holds, with this value.
    Bad(f32),
    /// It does not.
    Clean,
    /// The sample says nothing about it.
    Unknown,
}

/// An issue that opened or closed, in sample time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Change {
    /// Opened: its start and worst value so far.
    Opened { started_at: i64, value: f32 },
    /// Closed: its start, end and worst value.
    Closed { started_at: i64, ended_at: i64, value: f32 },
}

impl Detector {
    /// Whether an issue is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Whether the condition holds now (an issue open or a bad run under way).
    pub(crate) fn is_bad(&self) -> bool {
        self.bad_since != NONE
    }

    /// Feeds one sample covering `[start, end]` (milliseconds). `lower_is_worse` says how values
    /// compare (scores) against higher-is-worse (loss, jitter, RTT).
    pub(crate) fn observe(
        &mut self,
        reading: Reading,
        start: i64,
        end: i64,
        open_after_ms: i64,
        close_after_ms: i64,
        lower_is_worse: bool,
    ) -> Option<Change> {
        match reading {
            Reading::Unknown => None,
            Reading::Bad(value) => {
                self.clean_since = NONE;
                if self.bad_since == NONE {
                    self.bad_since = start;
                    self.worst = value;
                } else if (lower_is_worse && value < self.worst)
                    || (!lower_is_worse && value > self.worst)
                {
                    self.worst = value;
                }
                if !self.open && end.saturating_sub(self.bad_since) >= open_after_ms {
                    self.open = true;
                    return Some(Change::Opened { started_at: self.bad_since, value: self.worst });
                }
                None
            }
            Reading::Clean if !self.open => {
                self.bad_since = NONE;
                None
            }
            Reading::Clean => {
                if self.clean_since == NONE {
                    self.clean_since = start;
                }
                if end.saturating_sub(self.clean_since) >= close_after_ms {
                    let change = Change::Closed {
                        started_at: self.bad_since,
                        ended_at: self.clean_since,
                        value: self.worst,
                    };
                    *self = Detector::default();
                    return Some(change);
                }
                None
            }
        }
    }

    /// Opens an issue for a track silent since `silent_since` (no sample since then) if, with
    /// any bad run under way before it, the silence covers `open_after_ms` at `now`: the issue
    /// starts where the bad run or the silence began.
    pub(crate) fn open_silent(
        &mut self,
        silent_since: i64,
        now: i64,
        open_after_ms: i64,
    ) -> Option<Change> {
        if self.open {
            return None;
        }
        let since = if self.bad_since == NONE { silent_since } else { self.bad_since };
        if now.saturating_sub(since) < open_after_ms {
            return None;
        }
        *self = Detector { bad_since: since, clean_since: NONE, worst: 0.0, open: true };
        Some(Change::Opened { started_at: since, value: 0.0 })
    }

    /// An issue open since `started_at` with the worst value `worst`, as a restart or a cluster
    /// take-over restores it from the store ([`TrackQuality::restore`]): its bad run starts at
    /// the issue's start (so it keeps its id), and its clean run is empty, so it closes once
    /// clean samples seen *after the restore* cover `close_after`. A clean run under way at the
    /// cut was never stored: it starts again, which may close the issue up to `close_after`
    /// later than without the cut, never earlier (replayed samples of a take-over rebuild it
    /// exactly).
    pub(crate) fn restored(started_at: i64, worst: f32) -> Self {
        Self { bad_since: started_at, clean_since: NONE, worst, open: true }
    }

    /// The detector's state for the store; `None` while it holds nothing (no bad run, no issue).
    pub(crate) fn state(&self, kind: IssueKind) -> Option<DetectorState> {
        (self.bad_since != NONE).then(|| DetectorState {
            kind,
            bad_since: self.bad_since,
            clean_since: (self.clean_since != NONE).then_some(self.clean_since),
            worst: self.worst,
            open: self.open,
        })
    }

    /// A detector as a stored state left it ([`Detector::state`]). A clean run belongs to an
    /// open issue only, and a time of "none" is no time: such parts are dropped.
    pub(crate) fn from_state(state: &DetectorState) -> Self {
        if state.bad_since == NONE || !state.worst.is_finite() {
            return Self::default();
        }
        let clean_since = match state.clean_since {
            Some(at) if state.open && at != NONE => at,
            _ => NONE,
        };
        Self { bad_since: state.bad_since, clean_since, worst: state.worst, open: state.open }
    }

    /// Closes an open issue at `at` (its track or participant went away) and forgets any bad
    /// run.
    pub(crate) fn force_close(&mut self, at: i64) -> Option<Change> {
        let change = self.open.then(|| Change::Closed {
            started_at: self.bad_since,
            ended_at: if self.clean_since == NONE {
                at.max(self.bad_since)
            } else {
                self.clean_since
            },
            value: self.worst,
        });
        *self = Detector::default();
        change
    }
}

/// What one sample says about the five conditions, worked out once per `TrackStats` call from
/// the sample alone (outside every lock).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SampleReading {
    /// Packets received or sent (primary and retransmitted).
    pub(crate) packets: u64,
    /// Packets lost.
    pub(crate) lost: u64,
    /// The highest jitter of the sample's streams, in LiveKit's unit (microseconds).
    pub(crate) jitter_us: u32,
    /// The highest round-trip time of its streams, in milliseconds (0: not measured).
    pub(crate) rtt_ms: u32,
    /// LiveKit's connection score (0: not given).
    pub(crate) score: f32,
}

impl SampleReading {
    /// Loss as a percentage of the packets expected; `None` without packets.
    pub(crate) fn loss_pct(&self) -> Option<f64> {
        let expected = self.packets.saturating_add(self.lost);
        (expected > 0).then(|| self.lost as f64 * 100.0 / expected as f64)
    }

    /// Jitter in milliseconds.
    pub(crate) fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter_us) / 1000.0
    }
}

/// The thresholds in the units the detectors use, converted once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Thresholds {
    /// Whether detection runs.
    pub(crate) enabled: bool,
    /// `open_after` in milliseconds.
    pub(crate) open_after_ms: i64,
    /// `close_after` in milliseconds.
    pub(crate) close_after_ms: i64,
    /// `loss_pct`.
    pub(crate) loss_pct: f64,
    /// `jitter_ms`.
    pub(crate) jitter_ms: f64,
    /// `rtt_ms`.
    pub(crate) rtt_ms: f64,
    /// `min_score`.
    pub(crate) min_score: f64,
}

impl Thresholds {
    /// Converts a [`QualityConfig`].
    pub(crate) fn new(config: &QualityConfig) -> Self {
        let millis =
            |duration: std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self {
            enabled: config.enabled,
            open_after_ms: millis(config.open_after),
            close_after_ms: millis(config.close_after),
            loss_pct: config.loss_pct,
            jitter_ms: config.jitter_ms,
            rtt_ms: config.rtt_ms,
            min_score: config.min_score,
        }
    }

    /// The threshold of `kind`, as issues report it.
    pub(crate) fn of(&self, kind: IssueKind) -> f64 {
        match kind {
            IssueKind::PacketLoss => self.loss_pct,
            IssueKind::Jitter => self.jitter_ms,
            IssueKind::Rtt => self.rtt_ms,
            IssueKind::LowScore => self.min_score,
            IssueKind::NoMedia => 0.0,
        }
    }

    /// Whether `sample` breaks any threshold: when it does not and no detector of the track is
    /// bad or open, the detectors have nothing to do (the usual case, checked in a few
    /// comparisons).
    pub(crate) fn any_bad(&self, sample: &SampleReading, upstream: bool, muted: bool) -> bool {
        sample.loss_pct().is_some_and(|loss| loss > self.loss_pct)
            || (sample.packets > 0 && sample.jitter_ms() > self.jitter_ms)
            || (sample.rtt_ms > 0 && f64::from(sample.rtt_ms) > self.rtt_ms)
            || (sample.score > 0.0 && f64::from(sample.score) < self.min_score)
            || (upstream && !muted && sample.packets == 0)
    }

    /// What `sample` says about `kind`. `no_media` is judged on upstream tracks only (a
    /// subscriber may pause a track it does not show), and a muted track is never without media.
    pub(crate) fn read(
        &self,
        kind: IssueKind,
        sample: &SampleReading,
        upstream: bool,
        muted: bool,
    ) -> Reading {
        let over = |value: f64, threshold: f64| {
            if value > threshold { Reading::Bad(value as f32) } else { Reading::Clean }
        };
        match kind {
            IssueKind::PacketLoss => match sample.loss_pct() {
                Some(loss) => over(loss, self.loss_pct),
                None => Reading::Unknown,
            },
            IssueKind::Jitter if sample.packets > 0 => over(sample.jitter_ms(), self.jitter_ms),
            IssueKind::Rtt if sample.rtt_ms > 0 => over(f64::from(sample.rtt_ms), self.rtt_ms),
            IssueKind::Jitter | IssueKind::Rtt => Reading::Unknown,
            IssueKind::LowScore if sample.score > 0.0 => {
                if f64::from(sample.score) < self.min_score {
                    Reading::Bad(sample.score)
                } else {
                    Reading::Clean
                }
            }
            IssueKind::LowScore => Reading::Unknown,
            IssueKind::NoMedia if !upstream => Reading::Unknown,
            IssueKind::NoMedia if muted || sample.packets > 0 => Reading::Clean,
            IssueKind::NoMedia => Reading::Bad(0.0),
        }
    }
}

/// The detectors of one media track and direction; they survive flushes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TrackQuality {
    detectors: [Detector; 5],
    /// The track is muted (`TrackMuted` without a later `TrackUnmuted`).
    pub(crate) muted: bool,
    /// Upstream tracks seen published (`TrackPublished` without a later `TrackUnpublished`):
    /// the time silence counts from, the publication or the latest unmute; `NONE` otherwise.
    pub(crate) quiet_from: i64,
    /// The longest interval of the track's samples taken by the latest flush that took some:
    /// silence opens `no_media` only once it is that much longer than `open_after`, so a track
    /// that reports every 30 s is not silent between two samples.
    pub(crate) cadence_ms: u32,
    /// The kinds whose condition held at the last sample, as last written to the upstream board.
    pub(crate) board_mask: u8,
    /// Some detector is bad or open.
    active: bool,
}

impl Default for TrackQuality {
    fn default() -> Self {
        Self {
            detectors: [Detector::default(); 5],
            muted: false,
            quiet_from: NONE,
            cadence_ms: 0,
            board_mask: 0,
            active: false,
        }
    }
}

impl TrackQuality {
    /// Marks the track published at `at` (a later publication of the same track keeps the
    /// first).
    pub(crate) fn publish(&mut self, at: i64, muted: bool) {
        if self.quiet_from == NONE {
            self.quiet_from = at;
            self.muted = muted;
        }
    }

    /// Marks the track unpublished: silence no longer opens `no_media`.
    pub(crate) fn unpublish(&mut self) {
        self.quiet_from = NONE;
    }

    /// Marks the track muted or not at `at`. A mute closes an open `no_media` issue there (a
    /// muted track is never without media); an unmute of a published track counts its silence
    /// from then.
    pub(crate) fn set_muted(
        &mut self,
        muted: bool,
        at: i64,
        changes: &mut Vec<(IssueKind, Change)>,
    ) {
        self.muted = muted;
        let no_media = &mut self.detectors[IssueKind::NoMedia as usize];
        if muted {
            if let Some(change) = no_media.force_close(at) {
                changes.push((IssueKind::NoMedia, change));
            }
            self.active =
                self.detectors.iter().any(|detector| detector.is_bad() || detector.is_open());
        } else if self.quiet_from != NONE {
            self.quiet_from = self.quiet_from.max(at);
        }
    }

    /// The flush's check of a published upstream track: unmuted and without a sample since
    /// `last_end` (its latest sample's end, `None` if it never sent one) or since it was
    /// published or unmuted, whichever is later, for `open_after` and its usual sample interval
    /// ([`TrackQuality::cadence_ms`]) at `now` (the worker's sample time) opens `no_media`,
    /// started at that time. Appends the change.
    pub(crate) fn check_silence(
        &mut self,
        thresholds: &Thresholds,
        last_end: Option<i64>,
        now: i64,
        changes: &mut Vec<(IssueKind, Change)>,
    ) {
        if self.quiet_from == NONE || self.muted {
            return;
        }
        let silent_since = last_end.map_or(self.quiet_from, |end| end.max(self.quiet_from));
        if let Some(change) = self.detectors[IssueKind::NoMedia as usize].open_silent(
            silent_since,
            now,
            thresholds.open_after_ms.saturating_add(i64::from(self.cadence_ms)),
        ) {
            changes.push((IssueKind::NoMedia, change));
            self.active = true;
        }
    }

    /// Whether the track is a published upstream one (`TrackPublished` seen, not unpublished).
    pub(crate) fn is_published(&self) -> bool {
        self.quiet_from != NONE
    }

    /// Feeds one sample; `clean_kinds` are read as clean whatever the sample says (a
    /// subscriber's trouble that its publisher's upstream explains). Appends each change with its
    /// kind to `changes`.
    pub(crate) fn observe(
        &mut self,
        thresholds: &Thresholds,
        sample: &SampleReading,
        upstream: bool,
        clean_kinds: u8,
        interval: (i64, i64),
        changes: &mut Vec<(IssueKind, Change)>,
    ) {
        let muted = self.muted;
        if !self.active && !thresholds.any_bad(sample, upstream, muted) {
            return;
        }
        for (kind, detector) in IssueKind::ALL.into_iter().zip(&mut self.detectors) {
            let reading = if clean_kinds & kind.bit() != 0 {
                Reading::Clean
            } else {
                thresholds.read(kind, sample, upstream, muted)
            };
            if let Some(change) = detector.observe(
                reading,
                interval.0,
                interval.1,
                thresholds.open_after_ms,
                thresholds.close_after_ms,
                kind == IssueKind::LowScore,
            ) {
                changes.push((kind, change));
            }
        }
        self.active = self.detectors.iter().any(|detector| detector.is_bad() || detector.is_open());
    }

    /// The kinds whose condition holds (open or under way).
    pub(crate) fn bad_mask(&self) -> u8 {
        IssueKind::ALL
            .into_iter()
            .zip(&self.detectors)
            .filter(|(_, detector)| detector.is_bad())
            .fold(0, |mask, (kind, _)| mask | kind.bit())
    }

    /// Restores an issue of `kind` open since `started_at` with the worst value `worst` (see
    /// [`Detector::restored`]); returns false, changing nothing, if that kind's issue is open
    /// already. A bad run under way on the kind is replaced by the restored issue.
    pub(crate) fn restore(&mut self, kind: IssueKind, started_at: i64, worst: f32) -> bool {
        let Some(detector) = IssueKind::ALL
            .into_iter()
            .zip(&mut self.detectors)
            .find_map(|(candidate, detector)| (candidate == kind).then_some(detector))
        else {
            return false;
        };
        if detector.is_open() {
            return false;
        }
        *detector = Detector::restored(started_at, worst);
        self.active = true;
        true
    }

    /// Whether the detectors hold anything a restart needs: a bad run or an open issue, a
    /// publication (silence counts from it) or a mute.
    pub(crate) fn holds_state(&self) -> bool {
        self.active || self.quiet_from != NONE || self.muted
    }

    /// Feeds what a restart needs into `hasher` (what [`TrackQuality::state`] holds, but the
    /// affected list and the cadence), so that a flush finds whether it changed without building
    /// it. The cadence is left out: an SFU's sample intervals wobble by milliseconds, and a
    /// publisher's state written again at every flush for that would cost a write per publisher
    /// per flush; the cadence stored is the one of the last state written for another reason.
    pub(crate) fn hash_state(&self, hasher: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        for detector in &self.detectors {
            (detector.bad_since, detector.clean_since, detector.worst.to_bits(), detector.open)
                .hash(hasher);
        }
        (self.muted, self.quiet_from).hash(hasher);
    }

    /// The state for the store of the track `track_id` in `direction`, with the subscribers
    /// listed as `affected` by its upstream trouble.
    pub(crate) fn state(
        &self,
        direction: crate::keys::Direction,
        track_id: &str,
        affected: Vec<String>,
    ) -> TrackQualityState {
        TrackQualityState {
            direction,
            track_id: track_id.to_owned(),
            muted: self.muted,
            quiet_from: (self.quiet_from != NONE).then_some(self.quiet_from),
            cadence_ms: self.cadence_ms,
            detectors: IssueKind::ALL
                .into_iter()
                .zip(&self.detectors)
                .filter_map(|(kind, detector)| detector.state(kind))
                .collect(),
            affected,
        }
    }

    /// The detectors as a stored state left them ([`TrackQuality::state`]); the board mask is
    /// the caller's to write. A kind listed twice keeps its last state.
    pub(crate) fn restore_state(&mut self, state: &TrackQualityState) {
        self.muted = state.muted;
        self.quiet_from = state.quiet_from.unwrap_or(NONE);
        self.cadence_ms = state.cadence_ms;
        self.detectors = [Detector::default(); 5];
        for detector in &state.detectors {
            self.detectors[detector.kind as usize] = Detector::from_state(detector);
        }
        self.active = self.detectors.iter().any(|detector| detector.is_bad() || detector.is_open());
    }

    /// Whether any issue is open.
    pub(crate) fn any_open(&self) -> bool {
        self.detectors.iter().any(Detector::is_open)
    }

    /// Closes every open issue at `at`; appends the changes.
    pub(crate) fn force_close(&mut self, at: i64, changes: &mut Vec<(IssueKind, Change)>) {
        for (kind, detector) in IssueKind::ALL.into_iter().zip(&mut self.detectors) {
            if let Some(change) = detector.force_close(at) {
                changes.push((kind, change));
            }
        }
        self.active = false;
    }
}
