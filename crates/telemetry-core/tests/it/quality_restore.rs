//! Call quality across a restart or a take-over: the issues a run left open come back with the
//! workers (`restore_issues` after `restore_workers`), so each is closed with its own id, by a
//! clean run, a leave or an unpublish, and a replayed bad sample opens no second issue; what
//! the restored service produces is what one service without the cut would have.

use telemetry_core::proto as lk;
use telemetry_core::quality::{IssueKind, QualityChange, QualityIssue};
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

/// What a run kept, as a store would: the last state of each worker, and the quality changes.
#[derive(Default)]
struct Kept {
    workers: Vec<WorkerState>,
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
                _ => {}
            }
        }
        self.changes.extend(changes.iter().cloned());
        changes
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
    let issues = harness.service.restore_issues(&kept.open_issues());
    (harness, issues)
}

/// The publisher's upstream samples every `cadence_s` over `[from_s, until_s)`, lossy before
/// `clean_from_s`; returns the quality changes.
fn upstream(
    harness: &Harness,
    kept: &mut Kept,
    from_s: i64,
    until_s: i64,
    clean_from_s: i64,
) -> Vec<QualityChange> {
    let mut changes = Vec::new();
    let cadence_s = 5;
    let mut start_s = from_s;
    while start_s < until_s {
        let end_s = start_s + cadence_s;
        harness.clock.set(at(end_s));
        harness.track_stats(
            "RoomSid",
            &key(Direction::Upstream, PUBLISHER),
            sample(start_s, end_s, start_s < clean_from_s),
        );
        changes.extend(kept.keep(harness));
        start_s = end_s;
    }
    changes
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
    let mut start_s = 0;
    while start_s < 40 {
        first.clock.set(at(start_s + 5));
        first.track_stats(
            "RoomSid",
            &key(Direction::Upstream, PUBLISHER),
            sample(start_s, start_s + 5, true),
        );
        first.track_stats(
            "RoomSid",
            &key(Direction::Downstream, "PA_sub0"),
            sample(start_s, start_s + 5, true),
        );
        kept.keep(&first);
        start_s += 5;
    }
    let open = kept.open_issues();
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].affected, ["PA_sub0"]);

    let (next, issues) = restored(&kept, 40);
    assert_eq!(issues, 1);
    let mut changes = Vec::new();
    while start_s < 120 {
        next.clock.set(at(start_s + 5));
        let lossy = start_s < 60;
        next.track_stats(
            "RoomSid",
            &key(Direction::Upstream, PUBLISHER),
            sample(start_s, start_s + 5, lossy),
        );
        next.track_stats(
            "RoomSid",
            &key(Direction::Downstream, "PA_sub1"),
            sample(start_s, start_s + 5, lossy),
        );
        changes.extend(kept.keep(&next));
        start_s += 5;
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
