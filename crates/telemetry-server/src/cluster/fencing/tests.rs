//! Which outputs are written under which fence, and where the pipeline cuts its writes.

use telemetry_core::UnixMillis;
use telemetry_store::model::{Lease, WorkerRecord};

use super::{Cut, Fencing, Route};

fn worker(participant: &str) -> WorkerRecord {
    WorkerRecord {
        room_id: "RM_1".into(),
        participant_id: participant.into(),
        room_name: "room".into(),
        identity: participant.into(),
        node_id: "sfu".into(),
        created_at: UnixMillis(0),
        connected: true,
        guards: vec!["default".into()],
        open: true,
        closed_at: None,
        reaped: false,
    }
}

#[test]
fn outputs_of_a_held_partition_are_fenced_from_its_epoch_on_and_dropped_once_it_is_gone() {
    let fencing = Fencing::new("a", 4);
    let lease = Lease { partition: 2, epoch: 7 };
    assert_eq!(fencing.route(Some(2), 5), Route::Unfenced, "never consumed here: a Janus room");
    assert_eq!(fencing.route(None, 5), Route::Unfenced, "no room");
    fencing.hold(lease, 10, 0);
    assert_eq!(fencing.route(Some(2), 10), Route::Dropped, "made before this epoch");
    assert_eq!(fencing.route(Some(2), 11), Route::Fenced(lease));
    assert_eq!(fencing.route(Some(1), 11), Route::Unfenced);
    fencing.gone(2, 20);
    assert_eq!(fencing.route(Some(2), 20), Route::Dropped, "made while it was held");
    assert_eq!(fencing.route(Some(2), 21), Route::Unfenced, "made since, not from the stream");
}

#[test]
fn a_flush_is_written_whole_with_the_offsets_of_its_cut_and_the_workers_held_back() {
    let fencing = Fencing::new("a", 4);
    let lease = Lease { partition: 1, epoch: 3 };
    fencing.hold(lease, 0, 40);
    assert_eq!(fencing.next_cut(0), Cut::Free);
    fencing.applied(lease, 41);
    fencing.applied(Lease { partition: 1, epoch: 2 }, 99);
    fencing.defer_workers(lease, vec![worker("PA_1")]);
    fencing.begin_checkpoint(5);
    assert_eq!(fencing.next_cut(2), Cut::Through(5), "what came before the flush first");
    assert_eq!(fencing.next_cut(5), Cut::Wait, "the flush runs: its outputs are not all in");
    fencing.end_checkpoint(9);
    assert_eq!(fencing.next_cut(5), Cut::Through(9), "the whole flush in one write");
    assert!(fencing.take_checkpoint(8).is_none());
    fencing.defer_workers(lease, vec![worker("PA_2")]);
    let parts = fencing.take_checkpoint(9).expect("the checkpoint is written");
    assert_eq!(parts.len(), 1);
    let (fence, workers) = &parts[0];
    assert_eq!(fence.lease, lease);
    assert_eq!(fence.offset, Some(41), "the last message applied at this epoch");
    assert_eq!(fence.instance, "a");
    let ids: Vec<&str> = workers.iter().map(|w| w.participant_id.as_str()).collect();
    assert_eq!(ids, ["PA_1", "PA_2"]);
    assert_eq!(fencing.next_cut(9), Cut::Free);
    assert!(fencing.take_checkpoint(9).is_none(), "taken once");
}

#[test]
fn a_partition_lost_between_its_cut_and_the_write_gets_no_offset() {
    let fencing = Fencing::new("a", 4);
    let kept = Lease { partition: 0, epoch: 1 };
    let lost = Lease { partition: 3, epoch: 1 };
    fencing.hold(kept, 0, 0);
    fencing.hold(lost, 0, 0);
    fencing.applied(kept, 5);
    fencing.applied(lost, 6);
    fencing.begin_checkpoint(0);
    fencing.end_checkpoint(4);
    fencing.gone(3, 4);
    let parts = fencing.take_checkpoint(4).expect("written");
    let leases: Vec<Lease> = parts.iter().map(|(fence, _)| fence.lease).collect();
    assert_eq!(leases, [kept]);
}
