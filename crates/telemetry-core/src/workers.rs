//! Stats workers: one per `(room id, participant id)`, holding that participant's running
//! accumulators per track and direction, its reference guards and its connected state
//! (reference §2.7).
//!
//! Workers live in a table split into shards, each an `RwLock` over a hash table whose slots
//! hold the worker itself behind its own `Mutex` (no `Arc` hop: a `TrackStats` call is mostly
//! cache misses, so every pointer it does not follow counts). A `TrackStats` call takes one shard
//! read lock and one worker lock. A flush walks a shard under its read lock and holds each worker
//! lock only to swap its accumulators out; coalescing happens after, outside every lock. Creating,
//! replacing or reaping a worker takes the shard's write lock, which only lifecycle calls and
//! reaps do.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};
use livekit_protocol as lk;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

use crate::coalesce::{SampleSummary, TrackAccumulator};
use crate::keys::{Direction, StatsKey, StreamKind};
use crate::metrics::{SampleCounters, StatsMetrics};
use crate::nodes::NodeId;
use crate::output::WorkerState;
use crate::quality::detect::{Change, TrackQuality};
use crate::quality::{IssueKind, Quality, QualityChange, QualityIssue, QualityState};
use crate::rates::{RateCell, RateRing, sample_interval};
use crate::time::UnixMillis;

/// [`Worker::quality_stored`] before the worker's first flush: its first flush pushes a state, if
/// only an empty one, so that the store has one for every worker that lived through a flush (a
/// take-over then knows the stored state is the whole truth about the worker's detectors at the
/// partition's offset).
const NOT_PUSHED: u64 = u64::MAX;

/// Number of shards. A power of two well above the core count keeps two threads on different
/// participants from meeting on one lock, and keeps each shard's share of a flush small.
const SHARDS: usize = 256;

/// One participant's stats worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) room_id: Arc<str>,
    pub(crate) room_name: Arc<str>,
    pub(crate) participant_id: Arc<str>,
    pub(crate) identity: Arc<str>,
    pub(crate) created_at: UnixMillis,
    /// The node whose call created the worker (its participant gauge counts the worker).
    node: NodeId,
    /// A lifecycle call or a sample reached the worker since the last flush.
    touched: bool,
    /// The last flush that found the worker touched, by the flush clock: an open worker idle for
    /// longer than `participant_idle_timeout` is closed.
    active_at: UnixMillis,
    connected: bool,
    closed_at: Option<UnixMillis>,
    /// Set by the flush that takes the final samples; later samples are counted as arriving
    /// without a worker rather than silently lost with it.
    reaped: bool,
    ref_count: i64,
    /// Guard names and whether each is active. Names reused after a release re-activate, which
    /// maps LiveKit's "a fresh guard object per session" onto caller-chosen names.
    guards: Vec<(Box<str>, bool)>,
    /// Hashes of direction and track id, parallel to `tracks` and kept inline: a lookup scans
    /// them without touching the (large) track states. Most participants have a handful of
    /// tracks; a subscriber in a large room may have hundreds, still one short scan.
    track_hashes: SmallVec<[u64; 8]>,
    /// The tracks, in arrival order.
    tracks: Vec<TrackState>,
    /// The worker's sample time as the last flush reckoned it, for `no_media` of silent tracks
    /// ([`Worker::check_silence`]); `None` before the first flush that needed it.
    sample_clock: Option<SampleClock>,
    /// A fingerprint of the quality state a flush last pushed ([`Worker::quality_state`]); 0:
    /// an empty one; [`NOT_PUSHED`]: none yet.
    quality_stored: u64,
}

/// A worker's sample time at a flush: the latest time its samples and publications reached
/// (`latest`) while they advance; while they do not, that time plus the flush clock's time
/// since (the SFU stopped reporting, so sample time is read off the flush clock). Backlogged or
/// replayed calls, whose times lag the clock, so never make a track look silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SampleClock {
    /// The latest sample end or publication time seen.
    latest: i64,
    /// The sample time reckoned.
    now: i64,
    /// The flush clock then.
    flushed_at: i64,
}

#[derive(Debug)]
struct TrackState {
    direction: Direction,
    /// Track ids are short (`TR_` and 12 characters): inline, no allocation, no pointer chase.
    track_id: CompactString,
    kind: StreamKind,
    node: NodeId,
    /// The last flush that took samples of the track (or its creation): a track idle for longer
    /// than `participant_idle_timeout` is dropped from the worker.
    active_at: UnixMillis,
    /// End of the latest sample interval; survives flushes, so a timestamp-less sample always
    /// starts where the previous one ended.
    last_end: Option<UnixMillis>,
    accumulator: TrackAccumulator,
    /// The issue detectors (media tracks only); they survive flushes.
    quality: TrackQuality,
    /// Downstream: what the last look at the upstream board found.
    board_seen: crate::quality::board::Seen,
}

/// What recording a sample did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Folded in, covering this interval.
    Interval(UnixMillis, UnixMillis),
    /// Counted, but skipped: a counter was negative.
    Invalid,
    /// Not recorded: the track reached `max_samples_per_track` since the last flush.
    ShedTrackLimit,
    /// Not recorded: a new track, and the worker holds `max_tracks_per_participant` already.
    TooManyTracks,
    /// Not recorded: the worker was reaped.
    Reaped,
}

/// A track's samples taken by a flush.
#[derive(Debug)]
pub(crate) struct TakenTrack {
    pub(crate) direction: Direction,
    pub(crate) track_id: CompactString,
    pub(crate) kind: StreamKind,
    pub(crate) node: NodeId,
    pub(crate) accumulator: TrackAccumulator,
}

impl Worker {
    pub(crate) fn new(
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        identity: &str,
        created_at: UnixMillis,
        node: NodeId,
    ) -> Self {
        Self {
            room_id: room_id.into(),
            room_name: room_name.into(),
            participant_id: participant_id.into(),
            identity: identity.into(),
            created_at,
            node,
            touched: true,
            active_at: created_at,
            connected: false,
            closed_at: None,
            reaped: false,
            ref_count: 0,
            guards: Vec::new(),
            track_hashes: SmallVec::new(),
            tracks: Vec::new(),
            sample_clock: None,
            quality_stored: NOT_PUSHED,
        }
    }

    /// Counts `guard` once: a guard already active adds nothing (LiveKit's `Activate`).
    pub(crate) fn activate(&mut self, guard: &str) {
        self.touched = true;
        match self.guards.iter_mut().find(|(name, _)| &**name == guard) {
            Some((_, true)) => {}
            Some((_, active)) => {
                *active = true;
                self.ref_count += 1;
            }
            None => {
                self.guards.push((guard.into(), true));
                self.ref_count += 1;
            }
        }
    }

    /// Releases `guard`; true when that brought the count to zero (LiveKit's `Release`). A guard
    /// never activated, or already released, changes nothing.
    fn release(&mut self, guard: &str) -> bool {
        match self.guards.iter_mut().find(|(name, _)| &**name == guard) {
            Some((_, active)) if *active => {
                *active = false;
                self.ref_count -= 1;
                self.ref_count == 0
            }
            _ => false,
        }
    }

    /// Releases `guard` and closes the worker when no guard holds it any more; true only for the
    /// call that closed it (LiveKit's `Close`).
    pub(crate) fn close(&mut self, guard: &str, at: UnixMillis) -> bool {
        if self.release(guard) && self.closed_at.is_none() {
            self.closed_at = Some(at);
            return true;
        }
        // Closed already, at a later time than this call's (an idle close by a flush whose
        // clock ran ahead of the calls): the cleanup wait counts from the call.
        if self.closed_at.is_some_and(|closed_at| at < closed_at) {
            self.closed_at = Some(at);
        }
        false
    }

    /// If the worker is open, activates `guard` on it and returns false (the caller joins it);
    /// returns true if it is closed (LiveKit's `Closed`).
    pub(crate) fn closed_or_join(&mut self, guard: &str) -> bool {
        if self.closed_at.is_none() {
            self.activate(guard);
            return false;
        }
        true
    }

    /// The worker's state for the store, its node named `node`.
    pub(crate) fn state(&self, node: Arc<str>) -> WorkerState {
        WorkerState {
            room_id: self.room_id.clone(),
            room_name: self.room_name.clone(),
            participant_id: self.participant_id.clone(),
            identity: self.identity.clone(),
            node,
            created_at: self.created_at,
            connected: self.connected,
            guards: if self.closed_at.is_some() {
                Vec::new()
            } else {
                self.guards
                    .iter()
                    .filter(|(_, active)| *active)
                    .map(|(name, _)| name.to_string())
                    .collect()
            },
            open: self.closed_at.is_none(),
            closed_at: self.closed_at,
            reaped: self.reaped,
        }
    }

    /// The node whose call made the worker.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    pub(crate) fn set_connected(&mut self) {
        self.touched = true;
        self.connected = true;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Folds one sample into its track's accumulator.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &mut self,
        at: UnixMillis,
        node: NodeId,
        key: &StatsKey,
        stat: &lk::AnalyticsStat,
        summary: &SampleSummary,
        flush_interval_ms: i64,
        limits: TrackLimits,
        hasher: &DefaultHashBuilder,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) -> Recorded {
        if self.reaped {
            return Recorded::Reaped;
        }
        let direction = key.stream_type;
        let hash = hasher.hash_one((direction, key.track_id.as_str()));
        let tracks = &self.tracks;
        let found = self.track_hashes.iter().enumerate().position(|(index, &candidate)| {
            candidate == hash
                && tracks[index].direction == direction
                && tracks[index].track_id == key.track_id
        });
        let index = match found {
            Some(index) => index,
            None if self.tracks.len() >= limits.max_tracks => return Recorded::TooManyTracks,
            None => {
                self.track_hashes.push(hash);
                self.tracks.push(TrackState {
                    direction,
                    track_id: CompactString::from(key.track_id.as_str()),
                    kind: key.kind(),
                    node,
                    active_at: self.active_at,
                    last_end: None,
                    accumulator: TrackAccumulator::default(),
                    quality: TrackQuality::default(),
                    board_seen: Default::default(),
                });
                self.tracks.len() - 1
            }
        };
        let track = &mut self.tracks[index];
        if track.accumulator.samples() >= limits.max_samples {
            return Recorded::ShedTrackLimit;
        }
        if !summary.valid {
            track.accumulator.record(stat, summary, (at, at));
            return Recorded::Invalid;
        }
        let first_start = self.created_at.max(at.plus_millis(-flush_interval_ms));
        let (start, end) = sample_interval(summary.own_interval, track.last_end, first_start, at);
        track.last_end = Some(track.last_end.map_or(end, |last| last.max(end)));
        track.node = node;
        track.accumulator.record(stat, summary, (start, end));
        if quality.thresholds.enabled && track.kind == StreamKind::Media && self.closed_at.is_none()
        {
            self.detect(index, summary, (start, end), at, quality, changes);
        }
        Recorded::Interval(start, end)
    }

    /// Feeds a recorded sample of media track `index` to its detectors. Upstream, the board
    /// learns which conditions hold; downstream, what the publisher's upstream explains reads as
    /// clean, and the subscriber is listed as reached by it.
    fn detect(
        &mut self,
        index: usize,
        summary: &SampleSummary,
        interval: (UnixMillis, UnixMillis),
        at: UnixMillis,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) {
        let track = &mut self.tracks[index];
        let upstream = track.direction == Direction::Upstream;
        let clean_kinds = if upstream {
            0
        } else {
            quality.board.reached(&track.track_id, &self.participant_id, &mut track.board_seen)
                & IssueKind::PROPAGATING
        };
        let mut kind_changes = Vec::new();
        track.quality.observe(
            &quality.thresholds,
            &summary.reading,
            upstream,
            clean_kinds,
            (interval.0.0, interval.1.0),
            &mut kind_changes,
        );
        self.emit(index, kind_changes, at, quality, changes);
    }

    /// Turns detector changes of track `index` into issues, then writes the upstream board if
    /// the conditions that hold changed (after reading `affected`, which the write may clear).
    fn emit(
        &mut self,
        index: usize,
        kind_changes: Vec<(IssueKind, Change)>,
        at: UnixMillis,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) {
        let track = &mut self.tracks[index];
        let upstream = track.direction == Direction::Upstream;
        for (kind, change) in kind_changes {
            let (started_at, ended_at, value) = match change {
                Change::Opened { started_at, value } => (started_at, None, value),
                Change::Closed { started_at, ended_at, value } => {
                    (started_at, Some(UnixMillis(ended_at)), value)
                }
            };
            let id = crate::quality::derived_id(
                crate::quality::ISSUE_PREFIX,
                &[
                    &self.room_id,
                    &self.participant_id,
                    &track.track_id,
                    track.direction.as_str(),
                    kind.as_str(),
                    &started_at.to_string(),
                ],
            );
            let affected =
                if upstream { quality.board.affected(&track.track_id) } else { Vec::new() };
            changes.push(QualityChange {
                at,
                issue: QualityIssue {
                    id,
                    kind,
                    direction: track.direction,
                    room_id: self.room_id.clone(),
                    room_name: self.room_name.clone(),
                    participant_id: self.participant_id.clone(),
                    identity: self.identity.clone(),
                    track_id: track.track_id.clone(),
                    value: f64::from(value),
                    threshold: quality.thresholds.of(kind),
                    started_at: UnixMillis(started_at),
                    ended_at,
                    affected,
                },
            });
        }
        if upstream {
            let mask = track.quality.bad_mask();
            if mask != track.quality.board_mask {
                quality.board.set(&track.track_id, mask);
                track.quality.board_mask = mask;
            }
        }
    }

    /// Closes the open issues of the tracks `which` selects, at `at` (their track or participant
    /// went away), and takes their upstreams off the board.
    pub(crate) fn close_issues(
        &mut self,
        at: UnixMillis,
        quality: &Quality,
        which: impl Fn(Direction, &str) -> bool,
        changes: &mut Vec<QualityChange>,
    ) {
        for index in 0..self.tracks.len() {
            let track = &mut self.tracks[index];
            if !which(track.direction, &track.track_id) {
                continue;
            }
            if !track.quality.any_open() && track.quality.board_mask == 0 {
                continue;
            }
            let mut kind_changes = Vec::new();
            track.quality.force_close(at.0, &mut kind_changes);
            self.emit(index, kind_changes, at, quality, changes);
        }
    }

    /// Restores `issue`, an issue of this worker's participant left open in the store by a
    /// previous run, on its track (made, as a media track of the worker's node, if the worker
    /// has none yet): its detector is open since the issue's start with its worst value (see
    /// [`crate::quality::detect::Detector::restored`] for the hysteresis), and an upstream
    /// issue is back on the board with its stored `affected` list. A later clean run closes it
    /// with the same id, and a leave, an unpublish or the track's idleness (counted from `now`)
    /// closes it as any other. Returns false, changing nothing, for a closed worker (its issues
    /// were closed with it), a track the worker cannot hold (`max_tracks`) or a kind open on the
    /// track already.
    pub(crate) fn restore_issue(
        &mut self,
        issue: &QualityIssue,
        now: UnixMillis,
        max_tracks: usize,
        hasher: &DefaultHashBuilder,
        quality: &Quality,
    ) -> bool {
        if self.closed_at.is_some() || self.reaped {
            return false;
        }
        let direction = issue.direction;
        let Some(index) = self.restored_track(direction, &issue.track_id, now, max_tracks, hasher)
        else {
            return false;
        };
        let track = &mut self.tracks[index];
        if !track.quality.restore(issue.kind, issue.started_at.0, issue.value as f32) {
            return false;
        }
        if direction == Direction::Upstream {
            let mask = track.quality.bad_mask();
            quality.board.restore(&track.track_id, mask, &issue.affected);
            track.quality.board_mask = mask;
        }
        true
    }

    /// The index of media track `track_id` in `direction`, made (a media track of the worker's
    /// node, active at `now`) if the worker has none yet; `None` if the worker cannot hold one
    /// more (`max_tracks`) or the track is not a media track.
    fn restored_track(
        &mut self,
        direction: Direction,
        track_id: &str,
        now: UnixMillis,
        max_tracks: usize,
        hasher: &DefaultHashBuilder,
    ) -> Option<usize> {
        let hash = hasher.hash_one((direction, track_id));
        let tracks = &self.tracks;
        let found = self.track_hashes.iter().enumerate().position(|(index, &candidate)| {
            candidate == hash
                && tracks[index].direction == direction
                && tracks[index].track_id == track_id
        });
        let index = match found {
            Some(index) => index,
            None if self.tracks.len() >= max_tracks => return None,
            None => {
                self.track_hashes.push(hash);
                self.tracks.push(TrackState {
                    direction,
                    track_id: CompactString::from(track_id),
                    kind: StreamKind::Media,
                    node: self.node,
                    active_at: now,
                    last_end: None,
                    accumulator: TrackAccumulator::default(),
                    quality: TrackQuality::default(),
                    board_seen: Default::default(),
                });
                self.tracks.len() - 1
            }
        };
        (self.tracks[index].kind == StreamKind::Media).then_some(index)
    }

    /// A fingerprint of what [`Worker::quality_state`] would hold (0: nothing, or a closed
    /// worker).
    fn quality_fingerprint(&self, hasher: &DefaultHashBuilder, quality: &Quality) -> u64 {
        if self.closed_at.is_some() || self.reaped {
            return 0;
        }
        let mut state = hasher.build_hasher();
        let mut any = false;
        for track in &self.tracks {
            if track.kind != StreamKind::Media || !track.quality.holds_state() {
                continue;
            }
            any = true;
            (track.direction, track.track_id.as_str()).hash(&mut state);
            track.quality.hash_state(&mut state);
            if track.direction == Direction::Upstream && track.quality.board_mask != 0 {
                // The affected list only grows (up to its cap): its length tells a change.
                quality.board.affected_count(&track.track_id).hash(&mut state);
            }
        }
        if any { std::hash::Hasher::finish(&state).clamp(1, NOT_PUSHED - 1) } else { 0 }
    }

    /// At a flush, after [`Worker::take_for_flush`]: the worker's quality state
    /// ([`QualityState`]) at its first flush (an empty one if it holds nothing) and whenever it
    /// changed since the one pushed last (an empty one once it holds nothing any more, or the
    /// worker closed), else `None`. Nothing while detection is off, and nothing for a worker
    /// closed before its first flush.
    pub(crate) fn quality_state(
        &mut self,
        hasher: &DefaultHashBuilder,
        quality: &Quality,
    ) -> Option<QualityState> {
        if !quality.thresholds.enabled {
            return None;
        }
        let fingerprint = self.quality_fingerprint(hasher, quality);
        if fingerprint == self.quality_stored
            || (self.quality_stored == NOT_PUSHED && self.closed_at.is_some())
        {
            return None;
        }
        self.quality_stored = fingerprint;
        let tracks = if fingerprint == 0 {
            Vec::new()
        } else {
            self.tracks
                .iter()
                .filter(|track| track.kind == StreamKind::Media && track.quality.holds_state())
                .map(|track| {
                    let affected = if track.direction == Direction::Upstream
                        && track.quality.board_mask != 0
                    {
                        quality.board.affected(&track.track_id)
                    } else {
                        Vec::new()
                    };
                    track.quality.state(track.direction, &track.track_id, affected)
                })
                .collect()
        };
        Some(QualityState {
            room_id: self.room_id.clone(),
            room_name: self.room_name.clone(),
            participant_id: self.participant_id.clone(),
            created_at: self.created_at,
            tracks,
        })
    }

    /// Puts back `state`, the quality state a flush of a previous run pushed for this worker
    /// (see [`QualityState`]): each track's detectors, publication and mute as they were (a
    /// track made if the worker has none yet, within `max_tracks`), an upstream in trouble back
    /// on the board with its affected list. Returns false, changing nothing, for a closed worker
    /// or a state of another worker under the same key (another `created_at`).
    pub(crate) fn restore_quality(
        &mut self,
        state: &QualityState,
        now: UnixMillis,
        max_tracks: usize,
        hasher: &DefaultHashBuilder,
        quality: &Quality,
    ) -> bool {
        if self.closed_at.is_some() || self.reaped || self.created_at != state.created_at {
            return false;
        }
        for stored in &state.tracks {
            let Some(index) =
                self.restored_track(stored.direction, &stored.track_id, now, max_tracks, hasher)
            else {
                continue;
            };
            let track = &mut self.tracks[index];
            track.quality.restore_state(stored);
            if stored.direction == Direction::Upstream {
                let mask = track.quality.bad_mask();
                quality.board.set(&track.track_id, 0);
                quality.board.restore(&track.track_id, mask, &stored.affected);
                track.quality.board_mask = mask;
            }
        }
        self.quality_stored = self.quality_fingerprint(hasher, quality);
        true
    }

    /// Marks the upstream track `track_id` muted or not at `at`: a muted track is never without
    /// media, so a mute ends its `no_media` issue (pushed to `changes`).
    pub(crate) fn set_muted(
        &mut self,
        track_id: &str,
        muted: bool,
        at: UnixMillis,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) {
        let Some(index) = self.upstream_track(track_id) else { return };
        let mut kind_changes = Vec::new();
        self.tracks[index].quality.set_muted(muted, at.0, &mut kind_changes);
        self.emit(index, kind_changes, at, quality, changes);
    }

    /// The index of upstream track `track_id`.
    fn upstream_track(&self, track_id: &str) -> Option<usize> {
        self.tracks
            .iter()
            .position(|track| track.direction == Direction::Upstream && track.track_id == track_id)
    }

    /// `TrackPublished` of media track `track_id` at `at`: its upstream track is created if it
    /// has no sample yet (within `max_tracks`), and marked published, so that silence opens
    /// `no_media` even if it never sends a sample.
    pub(crate) fn publish(
        &mut self,
        track_id: &str,
        muted: bool,
        at: UnixMillis,
        node: NodeId,
        max_tracks: usize,
        hasher: &DefaultHashBuilder,
    ) {
        if self.reaped || self.closed_at.is_some() {
            return;
        }
        let index = match self.upstream_track(track_id) {
            Some(index) => index,
            None if self.tracks.len() >= max_tracks => return,
            None => {
                self.track_hashes.push(hasher.hash_one((Direction::Upstream, track_id)));
                self.tracks.push(TrackState {
                    direction: Direction::Upstream,
                    track_id: CompactString::from(track_id),
                    kind: StreamKind::Media,
                    node,
                    active_at: self.active_at,
                    last_end: None,
                    accumulator: TrackAccumulator::default(),
                    quality: TrackQuality::default(),
                    board_seen: Default::default(),
                });
                self.tracks.len() - 1
            }
        };
        self.tracks[index].quality.publish(at.0, muted);
    }

    /// `TrackUnpublished` of `track_id`: silence no longer opens `no_media` on it.
    pub(crate) fn unpublish(&mut self, track_id: &str) {
        if let Some(index) = self.upstream_track(track_id) {
            self.tracks[index].quality.unpublish();
        }
    }

    /// The flush's `no_media` check of the published upstream tracks that send nothing (see
    /// [`TrackQuality::check_silence`]), in the worker's sample time ([`SampleClock`]) as of
    /// the flush clock's `now`. An open worker only.
    fn check_silence(
        &mut self,
        now: UnixMillis,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) {
        if !quality.thresholds.enabled || self.closed_at.is_some() {
            return;
        }
        // No published track: nothing to check, and no clock to keep.
        if !self.tracks.iter().any(|track| track.quality.is_published()) {
            self.sample_clock = None;
            return;
        }
        let latest = self
            .tracks
            .iter()
            .map(|track| {
                let end = track.last_end.map_or(i64::MIN, |end| end.0);
                if track.quality.is_published() { end.max(track.quality.quiet_from) } else { end }
            })
            .fold(self.created_at.0, i64::max);
        let sample_now = match self.sample_clock {
            Some(clock) if latest <= clock.latest => {
                clock.now.saturating_add(now.0.saturating_sub(clock.flushed_at).max(0))
            }
            _ => latest,
        };
        self.sample_clock = Some(SampleClock { latest, now: sample_now, flushed_at: now.0 });
        for index in 0..self.tracks.len() {
            let track = &mut self.tracks[index];
            if track.direction != Direction::Upstream || !track.quality.is_published() {
                continue;
            }
            let interval = track.accumulator.max_interval_ms();
            if interval > 0 {
                track.quality.cadence_ms = u32::try_from(interval).unwrap_or(u32::MAX);
            }
            let mut kind_changes = Vec::new();
            track.quality.check_silence(
                &quality.thresholds,
                track.last_end.map(|end| end.0),
                sample_now,
                &mut kind_changes,
            );
            if !kind_changes.is_empty() {
                self.emit(index, kind_changes, UnixMillis(sample_now), quality, changes);
            }
        }
    }

    /// Takes every track's accumulated samples; returns them (upstream first, then by track id)
    /// and what the flush did to the worker: reaped it (closed for longer than `cleanup_wait_ms`),
    /// or closed it for idleness (open, untouched for longer than `idle_ms`). Drops the tracks
    /// without samples for longer than `idle_ms`.
    pub(crate) fn take_for_flush(
        &mut self,
        now: UnixMillis,
        cleanup_wait_ms: i64,
        idle_ms: i64,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
    ) -> (Vec<TakenTrack>, FlushEffect) {
        // The flush clock went back (an earlier flush, at a later time, closed or touched the
        // worker or its tracks): waits count from now, so that no reap or idle close waits for
        // the clock to catch up with a time it jumped to.
        self.closed_at = self.closed_at.map(|closed_at| closed_at.min(now));
        self.active_at = self.active_at.min(now);
        for track in &mut self.tracks {
            track.active_at = track.active_at.min(now);
        }
        let reap =
            self.closed_at.is_some_and(|closed_at| now.millis_since(closed_at) > cleanup_wait_ms);
        if reap {
            self.reaped = true;
        }
        let mut effect = FlushEffect { reaped: reap, ..FlushEffect::default() };
        self.check_silence(now, quality, changes);
        let mut taken = Vec::new();
        let mut idle_tracks = false;
        for track in &mut self.tracks {
            if track.accumulator.samples() == 0 {
                idle_tracks |= now.millis_since(track.active_at) > idle_ms;
            } else {
                track.active_at = now;
                self.touched = true;
                taken.push(TakenTrack {
                    direction: track.direction,
                    track_id: track.track_id.clone(),
                    kind: track.kind,
                    node: track.node,
                    accumulator: std::mem::take(&mut track.accumulator),
                });
            }
        }
        taken.sort_unstable_by(|a, b| (a.direction, &a.track_id).cmp(&(b.direction, &b.track_id)));
        if idle_tracks {
            // The issues of the tracks about to be dropped end now.
            let idle: Vec<(Direction, CompactString)> = self
                .tracks
                .iter()
                .filter(|track| {
                    track.accumulator.samples() == 0 && now.millis_since(track.active_at) > idle_ms
                })
                .map(|track| (track.direction, track.track_id.clone()))
                .collect();
            self.close_issues(
                now,
                quality,
                |direction, track_id| {
                    idle.iter().any(|(d, id)| *d == direction && id.as_str() == track_id)
                },
                changes,
            );
            let before = self.tracks.len();
            let keep = |track: &TrackState| {
                track.accumulator.samples() > 0 || now.millis_since(track.active_at) <= idle_ms
            };
            // `track_hashes` stays parallel to `tracks`.
            let mut kept = self.tracks.iter().map(keep);
            self.track_hashes.retain(|_| kept.next().unwrap_or(true));
            self.tracks.retain(keep);
            effect.tracks_dropped = before - self.tracks.len();
        }
        if std::mem::take(&mut self.touched) {
            self.active_at = now;
        } else if self.closed_at.is_none() && now.millis_since(self.active_at) > idle_ms {
            self.closed_at = Some(now);
            effect.closed_idle = true;
            self.close_issues(now, quality, |_, _| true, changes);
        }
        (taken, effect)
    }
}

/// The limits a sample is recorded under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrackLimits {
    /// `max_samples_per_track`.
    pub(crate) max_samples: u32,
    /// `limits.max_tracks_per_participant`.
    pub(crate) max_tracks: usize,
}

/// What a flush did to one worker besides taking its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlushEffect {
    /// Closed for longer than `worker_cleanup_wait`: removed.
    pub(crate) reaped: bool,
    /// Open and untouched for longer than `participant_idle_timeout`: closed now.
    pub(crate) closed_idle: bool,
    /// Tracks without samples for longer than `participant_idle_timeout`, dropped.
    pub(crate) tracks_dropped: usize,
}

/// What [`WorkerTable::get_or_create`] found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Obtained {
    /// An open worker, joined.
    Existing,
    /// A new worker (replacing a closed one, or the first for its key).
    Created,
    /// No worker: the table holds `limits.max_participants` already (counted).
    Refused,
}

/// Counters of the worker table's limits, for the metrics snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WorkerLimitCounters {
    pub(crate) refused: u64,
    pub(crate) closed_idle: u64,
    pub(crate) tracks_dropped: u64,
}

/// Per-shard state that every `TrackStats` call updates: node rate cells, Prometheus accounting
/// and sample counters.
#[derive(Debug, Default)]
pub(crate) struct ShardAux {
    /// The rate rings by rate group and node (the group of the sample's room, if the service
    /// has rate groups).
    pub(crate) rates: Vec<(Option<u32>, NodeId, RateRing)>,
    pub(crate) spilled: Vec<(Option<u32>, NodeId, i64, RateCell)>,
    pub(crate) metrics: StatsMetrics,
    pub(crate) counters: SampleCounters,
}

impl ShardAux {
    pub(crate) fn spread(
        &mut self,
        node: NodeId,
        group: Option<u32>,
        interval: (UnixMillis, UnixMillis),
        bytes: u64,
        packets: u64,
        direction: Direction,
    ) {
        let index = match self.rates.iter().position(|(g, n, _)| *n == node && *g == group) {
            Some(index) => index,
            None => {
                self.rates.push((group, node, RateRing::default()));
                self.rates.len() - 1
            }
        };
        let mut spilled = Vec::new();
        self.rates[index].2.add(interval.0, interval.1, bytes, packets, direction, &mut spilled);
        self.spilled.extend(spilled.into_iter().map(|(second, cell)| (group, node, second, cell)));
    }

    pub(crate) fn drain_rates(&mut self, out: &mut Vec<(Option<u32>, NodeId, i64, RateCell)>) {
        out.append(&mut self.spilled);
        let mut cells = Vec::new();
        for (group, node, ring) in &mut self.rates {
            ring.drain_into(&mut cells);
            out.extend(cells.drain(..).map(|(second, cell)| (*group, *node, second, cell)));
        }
    }
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    /// Tells this worker from a later one under the same key, for reaps decided under the read
    /// lock and carried out under the write lock.
    generation: u64,
    /// Sids are short: inline, so a lookup compares them without leaving the slot.
    room_id: CompactString,
    participant_id: CompactString,
    worker: Mutex<Worker>,
}

/// One shard of the worker table, aligned so that two shards never share a cache line (nor an
/// adjacent-line prefetch pair): threads on different shards must not write the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Shard {
    workers: RwLock<HashTable<Slot>>,
    /// Closed workers replaced by a new one for the same key: flushed once more, then dropped.
    retired: Mutex<Vec<Worker>>,
    pub(crate) aux: Mutex<ShardAux>,
}

/// The samples a flush took from one worker, with the worker's identity.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) room_id: Arc<str>,
    pub(crate) room_name: Arc<str>,
    pub(crate) participant_id: Arc<str>,
    pub(crate) identity: Arc<str>,
    pub(crate) tracks: Vec<TakenTrack>,
}

impl Taken {
    fn from_worker(worker: &Worker, tracks: Vec<TakenTrack>) -> Self {
        Self {
            room_id: worker.room_id.clone(),
            room_name: worker.room_name.clone(),
            participant_id: worker.participant_id.clone(),
            identity: worker.identity.clone(),
            tracks,
        }
    }
}

/// Every stats worker, sharded by key.
#[derive(Debug)]
pub(crate) struct WorkerTable {
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
    next_generation: AtomicU64,
    /// Slots in every shard (`limits.max_participants` bounds it).
    slots: AtomicUsize,
    max_slots: usize,
    refused: AtomicU64,
    closed_idle: AtomicU64,
    tracks_dropped: AtomicU64,
}

impl Default for WorkerTable {
    fn default() -> Self {
        Self::new(crate::config::CoreLimits::default().max_participants)
    }
}

impl WorkerTable {
    /// A table of at most `max_slots` workers (one per room and participant; a closed worker
    /// replaced by a rejoin shares its slot until the next flush).
    pub(crate) fn new(max_slots: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            next_generation: AtomicU64::new(1),
            slots: AtomicUsize::new(0),
            max_slots,
            refused: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            tracks_dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn limit_counters(&self) -> WorkerLimitCounters {
        WorkerLimitCounters {
            refused: self.refused.load(Ordering::Relaxed),
            closed_idle: self.closed_idle.load(Ordering::Relaxed),
            tracks_dropped: self.tracks_dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn hash(&self, room_id: &str, participant_id: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        room_id.hash(&mut hasher);
        participant_id.hash(&mut hasher);
        std::hash::Hasher::finish(&hasher)
    }

    pub(crate) fn shard(&self, hash: u64) -> &Shard {
        // The low bits pick the hash table bucket; shard by the high bits.
        &self.shards[(hash >> 56) as usize % SHARDS]
    }

    pub(crate) fn hasher(&self) -> &DefaultHashBuilder {
        &self.hasher
    }

    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Runs `f` with the worker for the key, if there is one, under the shard's read lock.
    pub(crate) fn with_worker<R>(
        &self,
        hash: u64,
        room_id: &str,
        participant_id: &str,
        f: impl FnOnce(Option<&Mutex<Worker>>) -> R,
    ) -> R {
        let workers = self.shard(hash).workers.read();
        let slot = workers.find(hash, |slot| {
            slot.hash == hash && slot.participant_id == participant_id && slot.room_id == room_id
        });
        f(slot.map(|slot| &slot.worker))
    }

    /// LiveKit's `getOrCreateWorker`: runs `f` on the open worker for the key with `guard`
    /// activated on it, or on a new one (carrying over a closed predecessor's connected state);
    /// returns which. A new key beyond `limits.max_participants` gets no worker (`f` is not
    /// run).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn get_or_create(
        &self,
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        identity: &str,
        guard: &str,
        at: UnixMillis,
        node: NodeId,
        f: impl FnOnce(&mut Worker),
    ) -> Obtained {
        let hash = self.hash(room_id, participant_id);
        let shard = self.shard(hash);
        let mut workers = shard.workers.write();
        let mut was_connected = false;
        let found = workers.find_mut(hash, |slot| {
            slot.hash == hash && slot.participant_id == participant_id && slot.room_id == room_id
        });
        if let Some(slot) = &found {
            let mut worker = slot.worker.lock();
            if !worker.closed_or_join(guard) {
                f(&mut worker);
                return Obtained::Existing;
            }
            was_connected = worker.is_connected();
        } else if self.slots.load(Ordering::Relaxed) >= self.max_slots {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Obtained::Refused;
        }
        let mut worker = Worker::new(room_id, room_name, participant_id, identity, at, node);
        worker.activate(guard);
        // Carry over connected state (livekit/livekit#3173): a resume that recreates the worker
        // must still end in `participant_left`, not `participant_connection_aborted`.
        worker.connected = was_connected;
        f(&mut worker);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        match found {
            Some(slot) => {
                let old = std::mem::replace(slot.worker.get_mut(), worker);
                slot.generation = generation;
                shard.retired.lock().push(old);
            }
            None => {
                self.slots.fetch_add(1, Ordering::Relaxed);
                workers.insert_unique(
                    hash,
                    Slot {
                        hash,
                        generation,
                        room_id: CompactString::from(room_id),
                        participant_id: CompactString::from(participant_id),
                        worker: Mutex::new(worker),
                    },
                    |slot| slot.hash,
                );
            }
        }
        Obtained::Created
    }

    /// Takes the samples of every worker of `shard` (and of its retired workers) into `out`, and
    /// reaps the workers closed for longer than `cleanup_wait_ms` (their last states, `reaped`,
    /// into `gone`); closes the workers and drops the tracks idle for longer than `idle_ms`
    /// (their states into `closed_idle`); the quality states that changed go into `states`
    /// (retired workers have none to keep: they are closed).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn take_shard(
        &self,
        shard: &Shard,
        now: UnixMillis,
        cleanup_wait_ms: i64,
        idle_ms: i64,
        out: &mut Vec<Taken>,
        closed_idle: &mut Vec<(NodeId, WorkerState)>,
        gone: &mut Vec<(NodeId, WorkerState)>,
        quality: &Quality,
        changes: &mut Vec<QualityChange>,
        states: &mut Vec<QualityState>,
    ) {
        let mut reaped = Vec::new();
        let (mut closed_idle_count, mut tracks_dropped) = (0, 0);
        {
            let workers = shard.workers.read();
            for slot in workers.iter() {
                let mut worker = slot.worker.lock();
                let (tracks, effect) =
                    worker.take_for_flush(now, cleanup_wait_ms, idle_ms, quality, changes);
                if !tracks.is_empty() {
                    out.push(Taken::from_worker(&worker, tracks));
                }
                if let Some(state) = worker.quality_state(&self.hasher, quality) {
                    states.push(state);
                }
                if effect.reaped {
                    reaped.push((slot.hash, slot.generation));
                    // The store drops the closed worker's record with it.
                    gone.push((worker.node, worker.state(Arc::from(""))));
                }
                if effect.closed_idle {
                    closed_idle_count += 1;
                    closed_idle.push((worker.node, worker.state(Arc::from(""))));
                }
                tracks_dropped += effect.tracks_dropped as u64;
            }
        }
        if closed_idle_count > 0 {
            self.closed_idle.fetch_add(closed_idle_count, Ordering::Relaxed);
        }
        if tracks_dropped > 0 {
            self.tracks_dropped.fetch_add(tracks_dropped, Ordering::Relaxed);
        }
        if !reaped.is_empty() {
            let mut workers = shard.workers.write();
            for (hash, generation) in reaped {
                if let Ok(entry) = workers.find_entry(hash, |slot| slot.generation == generation) {
                    entry.remove();
                    self.slots.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        // Replaced workers: their last samples go out, then they are dropped.
        let retired = std::mem::take(&mut *shard.retired.lock());
        for mut worker in retired {
            let (tracks, _) =
                worker.take_for_flush(now, cleanup_wait_ms, idle_ms, quality, changes);
            if !tracks.is_empty() {
                out.push(Taken::from_worker(&worker, tracks));
            }
        }
    }

    /// Removes every worker (retired ones too) whose room `forget(room_id, room_name)` names,
    /// with its samples not yet flushed and without any output, and takes their upstream tracks
    /// off the upstream `board` (a later restore of the rooms starts from the store, not from
    /// what this instance saw); returns the node of each open worker removed (they leave the
    /// participant gauge).
    pub(crate) fn forget(
        &self,
        forget: impl Fn(&str, &str) -> bool,
        board: &crate::quality::board::UpstreamBoard,
    ) -> Vec<NodeId> {
        let off_board = |worker: &Worker| {
            for track in &worker.tracks {
                if track.quality.board_mask != 0 {
                    board.set(&track.track_id, 0);
                }
            }
        };
        let mut open = Vec::new();
        for shard in self.shards.iter() {
            let mut workers = shard.workers.write();
            let mut removed = 0;
            workers.retain(|slot| {
                let worker = slot.worker.get_mut();
                if !forget(&worker.room_id, &worker.room_name) {
                    return true;
                }
                off_board(worker);
                if worker.closed_at.is_none() {
                    open.push(worker.node);
                }
                removed += 1;
                false
            });
            if removed > 0 {
                self.slots.fetch_sub(removed, Ordering::Relaxed);
            }
            shard.retired.lock().retain(|worker| {
                let forgotten = forget(&worker.room_id, &worker.room_name);
                if forgotten {
                    off_board(worker);
                }
                !forgotten
            });
        }
        open
    }

    pub(crate) fn worker_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.workers.read().len() + shard.retired.lock().len())
            .sum()
    }
}

#[cfg(test)]
mod tests;
