//! Tests of stats workers: LiveKit's `statsworker_test.go` (reference §6.3) and guard semantics.

use crate::time::UnixMillis;
use crate::workers::{Worker, WorkerTable};

fn worker_with(guard: &str) -> Worker {
    let mut worker = Worker::new("RM_1", "room", "PA_1", "alice", UnixMillis(0));
    worker.activate(guard);
    worker
}

/// §6.3: guards g0 (at creation) and g1 (through `Closed`) must both be released before `Close`
/// returns true; after that `Closed` reports the worker closed.
#[test]
fn reference_counted_close() {
    let mut worker = worker_with("g0");
    assert!(!worker.closed_or_join("g1"), "open: g1 joins");
    assert!(!worker.close("g0", UnixMillis(1)), "g1 still holds the worker");
    assert!(!worker.closed_or_join("g1"), "still open, and g1 is not counted twice");
    assert!(worker.close("g1", UnixMillis(2)), "the last guard closes it");
    assert!(worker.closed_or_join("g1"), "closed now");
}

#[test]
fn releasing_an_unknown_or_released_guard_changes_nothing() {
    let mut worker = worker_with("media");
    assert!(!worker.close("never-activated", UnixMillis(1)));
    assert!(worker.close("media", UnixMillis(2)));
    assert!(!worker.close("media", UnixMillis(3)), "only the closing call returns true");
}

#[test]
fn a_released_guard_name_used_again_counts_again() {
    let mut worker = worker_with("media");
    worker.activate("signal");
    assert!(!worker.close("signal", UnixMillis(1)));
    // The signal collector resets and joins again under the same name: a fresh guard.
    assert!(!worker.closed_or_join("signal"));
    assert!(!worker.close("media", UnixMillis(2)), "the re-activated signal guard holds it");
    assert!(worker.close("signal", UnixMillis(3)));
}

#[test]
fn get_or_create_joins_open_workers_and_replaces_closed_ones_carrying_connected_state() {
    let table = WorkerTable::default();
    let get = |guard: &str, at: i64, f: &mut dyn FnMut(&mut Worker)| {
        table.get_or_create("RM_1", "room", "PA_1", "alice", guard, UnixMillis(at), |worker| {
            f(worker)
        })
    };
    assert!(get("media", 0, &mut |worker| worker.set_connected()), "created");
    assert!(!get("signal", 1, &mut |_| {}), "joined: the worker is open");
    assert!(!get("signal", 2, &mut |worker| assert!(!worker.close("media", UnixMillis(2)))));
    assert!(!get("signal", 3, &mut |worker| {
        // "signal" is already active, so joining added nothing: releasing it closes the worker.
        assert!(worker.close("signal", UnixMillis(3)));
    }));
    let mut connected = false;
    assert!(
        get("media", 4, &mut |worker| connected = worker.is_connected()),
        "a closed worker is replaced"
    );
    assert!(connected, "connected state carries over (livekit/livekit#3173)");
    assert_eq!(table.worker_count(), 2, "the replaced worker waits for its last flush");
}

#[test]
fn workers_are_keyed_by_room_and_participant() {
    let table = WorkerTable::default();
    assert!(table.get_or_create("RM_1", "one", "PA_1", "alice", "g", UnixMillis(0), |_| {}));
    assert!(
        table.get_or_create("RM_2", "two", "PA_1", "alice", "g", UnixMillis(0), |_| {}),
        "the same participant id in another room is another worker (livekit/livekit#4323)"
    );
    assert_eq!(table.worker_count(), 2);
}
