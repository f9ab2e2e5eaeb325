//! Call quality across a restart or a take-over: the detectors' states the flushes pushed come
//! back with the workers (`restore_quality` after `restore_workers`), and so do the issues a run
//! left open (`restore_issues`), so each is closed with its own id, by a clean run, a leave or an
//! unpublish, a replayed bad sample opens no second issue, and a bad or clean run under way at
//! the cut ends as without it; what the restored service produces is what one service without
//! the cut would have.

use proptest::prelude::*;
use telemetry_core::proto as lk;
use telemetry_core::quality::{IssueKind, QualityChange, QualityIssue, QualityState};
use telemetry_core::{Direction, Output, StatsKey, UnixMillis, WorkerState};

use crate::harness::{Harness, T0, join, participant, room};

const TRACK: &str = "TR_audio";
const PUBLISHER: &str = "PA_pub";

fn at(seconds: i64) -> UnixMillis {
    T0.plus_millis(seconds * 1000)
}

fn key(direction: Direction, participant_id: &str) -> StatsKey {
    StatsKey::for_track(
        "US",
        direction,
        participant_id,
        TRACK,
        lk::TrackSource::Microphone,
        lk::TrackType::Audio,
    )
}

/// A sample over `[start_s, end_s)`: 50 packets a second, 20 % of them lost if `lossy`.
fn sample(start_s: i64, end_s: i64, lossy: bool) -> lk::AnalyticsStat {
    let seconds = (end_s - start_s) as u32;
    let packets = 50 * seconds;
    let stream = lk::AnalyticsStream {
        primary_packets: packets,
        primary_bytes: u64::from(packets) * 100,
        packets_lost: if lossy { 10 * seconds } else { 0 },
        jitter: 5_000,
        rtt: 40,
        start_time: Some(at(start_s).to_timestamp()),
        end_time: Some(at(end_s).to_timestamp()),
        ..Default::default()
    };
    lk::AnalyticsStat {
        streams: vec![stream],
        score: 4.5,
        mime: "audio/opus".into(),
        ..Default::default()
    }
}

/// What a run kept, as a store would: the last state of each worker, the last quality state of
/// each worker, and the quality changes.
#[derive(Default)]
struct Kept {
    workers: Vec<WorkerState>,
    quality: Vec<QualityState>,
    changes: Vec<QualityChange>,
}

impl Kept {
    fn keep(&mut self, harness: &Harness) -> Vec<QualityChange> {
        let mut changes = Vec::new();
        for output in harness.outputs() {
            match output.output {
                Output::Worker(state) => {
                    self.workers.retain(|kept| kept.participant_id != state.participant_id);
                    self.workers.push(state);
                }
                Output::Quality(change) => changes.push(*change),
                Output::QualityState(state) => {
                    self.quality.retain(|kept| kept.participant_id != state.participant_id);
                    self.quality.push(state);
                }
                _ => {}
            }
        }
        self.changes.extend(changes.iter().cloned());
        changes
    }

    /// A checkpoint: a flush at `now_s`, whose outputs are kept.
    fn checkpoint(&mut self, harness: &Harness, now_s: i64) -> Vec<QualityChange> {
        harness.clock.set(at(now_s));
        harness.service.flush_stats();
        self.keep(harness)
    }

    /// The issues still open: the last change of each id, if it opened it.
    fn open_issues(&self) -> Vec<QualityIssue> {
        let mut issues: Vec<QualityIssue> = Vec::new();
        for change in &self.changes {
            issues.retain(|issue| issue.id != change.issue.id);
            if !change.issue.is_ended() {
                issues.push(change.issue.clone());
            }
        }
        issues
    }
}

/// A room with the publisher of `TRACK` and `subscribers` subscribers (`PA_sub0`…), joined.
fn call(subscribers: usize, kept: &mut Kept) -> Harness {
    let harness = Harness::new();
    join(&harness, &room(), &participant(PUBLISHER));
    for index in 0..subscribers {
        join(&harness, &room(), &participant(&format!("PA_sub{index}")));
    }
    kept.keep(&harness);
    harness
}

/// The service of the next run: the kept workers and open issues restored, at `now_s`.
fn restored(kept: &Kept, now_s: i64) -> (Harness, usize) {
    let harness = Harness::new();
    harness.clock.set(at(now_s));
    let workers = harness.service.restore_workers(kept.workers.clone());
    assert_eq!(workers, kept.workers.iter().filter(|worker| !worker.reaped).count());
    assert_eq!(harness.service.restore_quality(&kept.quality), kept.quality.len());
    let issues = harness.service.restore_issues(&kept.open_issues());
    (harness, issues)
}

/// The publisher's upstream samples every 5 s over `[from_s, until_s)`, lossy before
/// `clean_from_s`; returns the quality changes.
fn upstream(
    harness: &Harness,
    kept: &mut Kept,
    from_s: i64,
    until_s: i64,
    clean_from_s: i64,
) -> Vec<QualityChange> {
    steps(harness, kept, (from_s, until_s), clean_from_s, &[])
}

/// Every 5 s over `[from, until)`: the publisher's upstream samples and the downstream ones of
/// `subscribers`, all lossy before `clean_from_s`; returns the quality changes.
fn steps(
    harness: &Harness,
    kept: &mut Kept,
    (from_s, until_s): (i64, i64),
    clean_from_s: i64,
    subscribers: &[&str],
) -> Vec<QualityChange> {
    (from_s..until_s)
        .step_by(5)
        .flat_map(|start_s| {
            let lossy = start_s < clean_from_s;
            let downstream: Vec<(&str, bool)> = subscribers.iter().map(|&s| (s, lossy)).collect();
            send(harness, kept, start_s, &[(PUBLISHER, lossy)], &downstream)
        })
        .collect()
}

/// One 5-s step from `start_s`: the upstream samples of `publishers` and the downstream ones of
/// `subscribers` (each lossy or not), sent at the step's end; returns the quality changes.
fn send(
    harness: &Harness,
    kept: &mut Kept,
    start_s: i64,
    publishers: &[(&str, bool)],
    subscribers: &[(&str, bool)],
) -> Vec<QualityChange> {
    harness.clock.set(at(start_s + 5));
    let legs = publishers
        .iter()
        .map(|&(who, lossy)| (Direction::Upstream, who, lossy))
        .chain(subscribers.iter().map(|&(who, lossy)| (Direction::Downstream, who, lossy)));
    for (direction, who, lossy) in legs {
        harness.track_stats("RoomSid", &key(direction, who), sample(start_s, start_s + 5, lossy));
    }
    kept.keep(harness)
}

/// Loss from 0 s to 60 s, clean after; the restart at 40 s, with the issue open.
#[test]
fn an_issue_open_at_a_restart_is_closed_after_close_after_with_its_id() {
    // Without a restart.
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    let expected = upstream(&one, &mut reference, 0, 120, 60);
    assert_eq!(expected.len(), 2, "{expected:#?}");
    assert_eq!(expected[1].issue.ended_at, Some(at(60)));
    assert_eq!(expected[1].at, at(70), "closed once 10 s of clean samples are in");

    // The restart at 40 s.
    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    let opened = upstream(&first, &mut kept, 0, 40, 60);
    assert_eq!(opened, expected[..1]);
    drop(first);
    let (next, issues) = restored(&kept, 40);
    assert_eq!(issues, 1);
    assert!(next.outputs().is_empty(), "restoring produces no output");
    let after = upstream(&next, &mut kept, 40, 120, 60);
    assert_eq!(after, expected[1..], "the same close, with the same id, at the same time");
    assert!(kept.open_issues().is_empty());
}

/// The publisher leaves after the restart: its restored issue ends at the leave, first.
#[test]
fn an_issue_restored_at_a_restart_is_closed_by_the_leave_or_the_unpublish() {
    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    let opened = upstream(&first, &mut kept, 0, 40, 1000);
    assert_eq!(opened.len(), 1);

    let (next, issues) = restored(&kept, 45);
    assert_eq!(issues, 1);
    next.service.participant_left(
        room(),
        participant(PUBLISHER),
        true,
        telemetry_core::DEFAULT_GUARD,
    );
    let outputs = next.outputs();
    let Output::Quality(ended) = &outputs[0].output else { panic!("{outputs:#?}") };
    assert_eq!(ended.issue.id, opened[0].issue.id);
    assert_eq!(ended.issue.started_at, at(0));
    assert_eq!(ended.issue.ended_at, Some(at(45)));
    assert!(matches!(outputs[1].output, Output::Call(_)));

    // The track unpublished.
    let (next, issues) = restored(&kept, 45);
    assert_eq!(issues, 1);
    let track = lk::TrackInfo { sid: TRACK.into(), ..Default::default() };
    next.service.track_unpublished(room(), PUBLISHER, "pub", track, false, true);
    let ended: Vec<QualityChange> = next
        .outputs()
        .into_iter()
        .filter_map(|output| match output.output {
            Output::Quality(change) => Some(*change),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0].issue.id, opened[0].issue.id);
    assert!(ended[0].issue.is_ended());
}

/// A take-over at 40 s replays the partition's messages from 20 s: the bad samples the
/// previous owner had seen open nothing new, and the close is the one of a run without the cut.
#[test]
fn replayed_bad_samples_after_a_take_over_open_no_second_issue() {
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    let expected = upstream(&one, &mut reference, 0, 120, 60);
    assert_eq!(expected.len(), 2, "{expected:#?}");

    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    upstream(&first, &mut kept, 0, 40, 60);
    let (next, issues) = restored(&kept, 40);
    assert_eq!(issues, 1);
    assert_eq!(next.service.restore_issues(&kept.open_issues()), 0, "open already");
    let replayed = upstream(&next, &mut kept, 20, 40, 60);
    assert!(replayed.is_empty(), "no second issue: {replayed:#?}");
    let after = upstream(&next, &mut kept, 40, 120, 60);
    assert_eq!(after, expected[1..]);
}

/// An upstream issue restored goes back on the upstream board: a subscriber's loss that the
/// publisher's explains is not the subscriber's own issue, and it is listed as affected, after
/// the subscribers listed before the cut.
#[test]
fn a_restored_upstream_issue_explains_its_subscribers_loss_and_keeps_its_affected() {
    let mut kept = Kept::default();
    let first = call(2, &mut kept);
    for start_s in (0..40).step_by(5) {
        send(&first, &mut kept, start_s, &[(PUBLISHER, true)], &[("PA_sub0", true)]);
    }
    let open = kept.open_issues();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].affected, ["PA_sub0"]);

    let (next, issues) = restored(&kept, 40);
    assert_eq!(issues, 1);
    let mut changes = Vec::new();
    for start_s in (40..120).step_by(5) {
        let lossy = start_s < 60;
        changes.extend(send(
            &next,
            &mut kept,
            start_s,
            &[(PUBLISHER, lossy)],
            &[("PA_sub1", lossy)],
        ));
    }
    assert_eq!(changes.len(), 1, "the upstream issue's end only: {changes:#?}");
    let ended = &changes[0].issue;
    assert_eq!(ended.id, open[0].id);
    assert_eq!(ended.kind, IssueKind::PacketLoss);
    assert_eq!(ended.ended_at, Some(at(60)));
    assert_eq!(ended.affected, ["PA_sub0", "PA_sub1"]);
}

/// Issues whose participant has no open worker after the restore are left as they are.
#[test]
fn an_issue_without_a_restored_worker_is_not_restored() {
    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    upstream(&first, &mut kept, 0, 40, 1000);
    let open = kept.open_issues();
    assert_eq!(open.len(), 1);
    let next = Harness::new();
    assert_eq!(next.service.restore_issues(&open), 0, "no worker");
    assert!(next.outputs().is_empty());
}

/// A partition given back and taken again by the same instance: `forget_workers` takes the
/// forgotten publisher's upstream off the board, so that once its issue was closed elsewhere
/// (nothing open to restore), a subscriber's own loss is its own issue, not explained away by
/// what this instance saw before.
#[test]
fn forgotten_workers_leave_the_upstream_board() {
    let mut kept = Kept::default();
    let service = call(1, &mut kept);
    let opened = upstream(&service, &mut kept, 0, 40, 1000);
    assert_eq!(opened.len(), 1);
    assert_eq!(service.service.forget_workers(|_, _| true), 2);
    // Meanwhile its next owner closed the issue.
    let mut closed = opened[0].clone();
    closed.issue.ended_at = Some(at(40));
    kept.changes.push(closed);
    service.service.restore_workers(kept.workers.clone());
    assert_eq!(service.service.restore_issues(&kept.open_issues()), 0);
    let mut changes = Vec::new();
    for start_s in (40..60).step_by(5) {
        service.clock.set(at(start_s + 5));
        service.track_stats(
            "RoomSid",
            &key(Direction::Downstream, "PA_sub0"),
            sample(start_s, start_s + 5, true),
        );
        changes.extend(kept.keep(&service));
    }
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0].issue.direction, Direction::Downstream);
    assert_eq!(&*changes[0].issue.participant_id, "PA_sub0");
}

/// Loss from 0 s to 60 s. The partition's checkpoint (a flush) at 5 s has a bad run under way,
/// not yet `open_after` long; its holder dies at 8 s and the next owner replays from 5 s. The
/// issue opens with its start at 0 s, hence the id one service without the cut gives it, and
/// closes as that service's does.
#[test]
fn a_bad_run_under_way_at_the_checkpoint_opens_its_issue_as_without_the_take_over() {
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    let expected = upstream(&one, &mut reference, 0, 120, 60);
    assert_eq!(expected.len(), 2, "{expected:#?}");
    assert_eq!(expected[0].issue.started_at, at(0));

    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    assert!(upstream(&first, &mut kept, 0, 5, 60).is_empty());
    kept.checkpoint(&first, 5);
    assert_eq!(kept.quality.len(), 1, "the bad run under way is kept");
    assert_eq!(kept.quality[0].tracks.len(), 1, "{:#?}", kept.quality);
    let run = &kept.quality[0].tracks[0].detectors[0];
    assert_eq!((run.kind, run.bad_since, run.open), (IssueKind::PacketLoss, at(0).0, false));
    drop(first);
    let (next, issues) = restored(&kept, 8);
    assert_eq!(issues, 0, "no issue open yet");
    let after = upstream(&next, &mut kept, 5, 120, 60);
    assert_eq!(after, expected, "the same issue, opened and closed at the same times");
}

/// The same without the detectors' states restored: the issue opens 5 s late, with another id
/// (what the checkpoint's state is for).
#[test]
fn without_the_checkpoint_state_the_replay_opens_the_issue_late_with_another_id() {
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    let expected = upstream(&one, &mut reference, 0, 120, 60);

    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    upstream(&first, &mut kept, 0, 5, 60);
    kept.checkpoint(&first, 5);
    kept.quality.clear();
    let (next, _) = restored(&kept, 8);
    let after = upstream(&next, &mut kept, 5, 120, 60);
    assert_eq!(after[0].issue.started_at, at(5));
    assert_ne!(after[0].issue.id, expected[0].issue.id);
}

/// Loss from 0 s to 60 s; the checkpoint at 65 s has the issue open and a clean run under way
/// since 60 s. After the take-over the issue closes at 70 s, ended at 60 s, as without it (a
/// restore of the open issue alone would start the clean run again at 65 s and close it 5 s
/// late).
#[test]
fn a_clean_run_under_way_at_the_checkpoint_closes_the_issue_as_without_the_take_over() {
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    let expected = upstream(&one, &mut reference, 0, 120, 60);

    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    let opened = upstream(&first, &mut kept, 0, 65, 60);
    assert_eq!(opened, expected[..1]);
    kept.checkpoint(&first, 65);
    let detector = &kept.quality[0].tracks[0].detectors[0];
    assert_eq!((detector.open, detector.clean_since), (true, Some(at(60).0)));
    let (next, issues) = restored(&kept, 66);
    assert_eq!(issues, 0, "open already, from the detectors' state");
    let after = upstream(&next, &mut kept, 65, 120, 60);
    assert_eq!(after, expected[1..], "closed at 70 s, ended at 60 s");
}

/// Once the issue closed and the track is clean, the next flush pushes an empty state (the
/// store forgets it); a flush that changes nothing pushes none.
#[test]
fn a_flush_pushes_a_quality_state_only_when_it_changed_and_an_empty_one_when_it_is_gone() {
    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    let states = |harness: &Harness, now_s: i64| {
        harness.clock.set(at(now_s));
        harness.service.flush_stats();
        harness
            .outputs()
            .into_iter()
            .filter_map(|output| match output.output {
                Output::QualityState(state) => Some(state),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let initial = states(&first, 0);
    assert_eq!(initial.len(), 1, "the first flush pushes one: {initial:#?}");
    assert!(initial[0].tracks.is_empty(), "empty for a clean worker");
    assert!(states(&first, 0).is_empty(), "unchanged");
    upstream(&first, &mut kept, 0, 5, 60);
    assert_eq!(states(&first, 5).len(), 1);
    assert!(states(&first, 6).is_empty(), "unchanged");
    upstream(&first, &mut kept, 5, 70, 60);
    let closed = upstream(&first, &mut kept, 70, 80, 60);
    assert!(closed.is_empty(), "closed at 70 s already");
    let last = states(&first, 80);
    assert_eq!(last.len(), 1);
    assert!(last[0].tracks.is_empty(), "nothing held any more: {last:#?}");
    assert!(states(&first, 81).is_empty());
}

/// A state restored onto a worker that is not the one it was taken from (a rejoin since, with
/// another creation time) is not applied.
#[test]
fn a_quality_state_of_another_worker_under_the_same_key_is_not_restored() {
    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    upstream(&first, &mut kept, 0, 5, 60);
    kept.checkpoint(&first, 5);
    let next = Harness::new();
    next.service.restore_workers(kept.workers.clone());
    let mut other = kept.quality[0].clone();
    other.created_at = other.created_at.plus_millis(1);
    assert_eq!(next.service.restore_quality(&[other]), 0);
}

/// The publisher's and `PA_sub0`'s samples of the track every 5 s over `[from_s, until_s)`,
/// both lossy before `clean_from_s`; returns the quality changes.
fn both_legs(
    harness: &Harness,
    kept: &mut Kept,
    from_s: i64,
    until_s: i64,
    clean_from_s: i64,
) -> Vec<QualityChange> {
    steps(harness, kept, (from_s, until_s), clean_from_s, &["PA_sub0"])
}

/// A publisher's upstream bad run under way at the checkpoint is back on the upstream board
/// after the take-over, with the subscriber it reached listed: the subscriber's loss stays
/// explained by it (no downstream issue of its own), and the one upstream issue lists it, as
/// without the take-over.
#[test]
fn an_upstream_bad_run_under_way_at_the_checkpoint_keeps_explaining_its_subscribers_loss() {
    let mut reference = Kept::default();
    let one = call(1, &mut reference);
    let expected = both_legs(&one, &mut reference, 0, 120, 60);
    assert_eq!(expected.len(), 2, "one upstream issue, opened and closed: {expected:#?}");
    assert_eq!(expected[0].issue.direction, Direction::Upstream);
    assert_eq!(expected[0].issue.affected, ["PA_sub0"]);

    let mut kept = Kept::default();
    let first = call(1, &mut kept);
    assert!(both_legs(&first, &mut kept, 0, 5, 60).is_empty());
    kept.checkpoint(&first, 5);
    let publisher = kept.quality.iter().find(|state| &*state.participant_id == PUBLISHER);
    assert_eq!(publisher.expect("the publisher's state").tracks[0].affected, ["PA_sub0"]);
    drop(first);
    let (next, _) = restored(&kept, 8);
    let after = both_legs(&next, &mut kept, 5, 120, 60);
    assert_eq!(after, expected);
}

/// A published track that never sends a sample, across a restart after a flush: its publication
/// comes back with the detectors' state, so silence still opens `no_media` from the publication
/// (the issue a service without the restart opens, same id).
#[test]
fn a_silent_published_track_opens_no_media_from_its_publication_after_a_restart() {
    let publish = |harness: &Harness| {
        harness.clock.set(at(3));
        let track = lk::TrackInfo {
            sid: TRACK.into(),
            r#type: lk::TrackType::Audio as i32,
            ..Default::default()
        };
        harness.service.track_published(room(), PUBLISHER, "pub", track, true);
    };
    let flushes = |harness: &Harness, kept: &mut Kept, from_s: i64, until_s: i64| {
        let mut changes = Vec::new();
        for now_s in from_s..until_s {
            changes.extend(kept.checkpoint(harness, now_s));
        }
        changes
    };
    let mut reference = Kept::default();
    let one = call(0, &mut reference);
    publish(&one);
    let expected = flushes(&one, &mut reference, 4, 40);
    assert_eq!(expected.len(), 1, "{expected:#?}");
    assert_eq!(expected[0].issue.kind, IssueKind::NoMedia);
    assert_eq!(expected[0].issue.started_at, at(3));

    let mut kept = Kept::default();
    let first = call(0, &mut kept);
    publish(&first);
    assert!(flushes(&first, &mut kept, 4, 6).is_empty());
    assert_eq!(kept.quality[0].tracks[0].quiet_from, Some(at(3).0));
    drop(first);
    let (next, _) = restored(&kept, 6);
    let after = flushes(&next, &mut kept, 6, 40);
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0].issue.id, expected[0].issue.id);
}

/// The issues a store keeps of `changes`, by id, under the store's merge rule (an open record
/// only if the id is new, a closed one replaces): kind, direction, participant, start, end and
/// affected list of each.
fn issue_table(changes: &[QualityChange]) -> std::collections::BTreeMap<String, QualityIssue> {
    let mut table = std::collections::BTreeMap::new();
    for change in changes {
        if change.issue.is_ended() {
            table.insert(change.issue.id.clone(), change.issue.clone());
        } else {
            table.entry(change.issue.id.clone()).or_insert_with(|| change.issue.clone());
        }
    }
    table
}

/// The publisher's and the subscriber's samples of step `step` (5 s each), lossy as `legs`
/// says; returns the changes.
fn step(
    harness: &Harness,
    kept: &mut Kept,
    step: i64,
    (up, down): (bool, bool),
) -> Vec<QualityChange> {
    send(harness, kept, step * 5, &[(PUBLISHER, up)], &[("PA_sub0", down)])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Cluster mode's take-over at any cut, with any trouble on either leg: the first owner
    /// flushes at the cut (its checkpoint: worker and quality states), goes on until it dies
    /// (its quality changes stored as they happen, as events are), and the next owner restores
    /// the workers and detectors as of the cut and the issues stored open, then replays every
    /// sample after the cut. The store then keeps exactly the issues of a run without the
    /// take-over: the same ids, starts, ends and affected lists, and nothing more.
    #[test]
    fn a_take_over_at_any_cut_keeps_the_issues_of_a_run_without_it(
        legs in prop::collection::vec((any::<bool>(), any::<bool>()), 2..30),
        cut_at in 0.0..1.0f64,
        died_after in 0usize..6,
    ) {
        let steps = legs.len();
        let mut reference = Kept::default();
        let one = call(1, &mut reference);
        for (n, &leg) in legs.iter().enumerate() {
            step(&one, &mut reference, n as i64, leg);
        }
        let expected = issue_table(&reference.changes);

        let cut = ((steps as f64 * cut_at) as usize).min(steps - 1);
        let died = (cut + died_after).min(steps);
        let mut kept = Kept::default();
        let first = call(1, &mut kept);
        for (n, &leg) in legs.iter().enumerate().take(cut) {
            step(&first, &mut kept, n as i64, leg);
        }
        kept.checkpoint(&first, cut as i64 * 5);
        // After the checkpoint only the quality changes reach the store.
        let (workers, quality) = (kept.workers.clone(), kept.quality.clone());
        for (n, &leg) in legs.iter().enumerate().take(died).skip(cut) {
            step(&first, &mut kept, n as i64, leg);
        }
        drop(first);
        kept.workers = workers;
        kept.quality = quality;
        let open: Vec<QualityIssue> =
            issue_table(&kept.changes).into_values().filter(|issue| !issue.is_ended()).collect();
        let next = Harness::new();
        next.clock.set(at(died as i64 * 5));
        next.service.restore_workers(kept.workers.clone());
        next.service.restore_quality(&kept.quality);
        // As a take-over does: the open issues of workers without a stored state only.
        let open: Vec<QualityIssue> = open
            .into_iter()
            .filter(|issue| !kept.quality.iter().any(|state| state.participant_id == issue.participant_id))
            .collect();
        next.service.restore_issues(&open);
        for (n, &leg) in legs.iter().enumerate().skip(cut) {
            step(&next, &mut kept, n as i64, leg);
        }
        prop_assert_eq!(issue_table(&kept.changes), expected);
    }
}
