//! Tests of stats workers: LiveKit's `statsworker_test.go` (reference §6.3) and guard semantics.

use crate::nodes::{LOCAL_NODE, NodeId};
use crate::time::UnixMillis;
use crate::workers::{Obtained, Worker, WorkerTable};

fn worker_with(guard: &str) -> Worker {
    let mut worker = Worker::new("RM_1", "room", "PA_1", "alice", UnixMillis(0), LOCAL_NODE);
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
        table.get_or_create(
            "RM_1",
            "room",
            "PA_1",
            "alice",
            guard,
            UnixMillis(at),
            LOCAL_NODE,
            |worker| f(worker),
        )
    };
    let created = |obtained: Obtained| obtained == Obtained::Created;
    assert!(created(get("media", 0, &mut |worker| worker.set_connected())), "created");
    assert!(!created(get("signal", 1, &mut |_| {})), "joined: the worker is open");
    assert!(!created(get("signal", 2, &mut |worker| assert!(
        !worker.close("media", UnixMillis(2))
    ))));
    assert!(!created(get("signal", 3, &mut |worker| {
        // "signal" is already active, so joining added nothing: releasing it closes the worker.
        assert!(worker.close("signal", UnixMillis(3)));
    })));
    let mut connected = false;
    assert!(
        created(get("media", 4, &mut |worker| connected = worker.is_connected())),
        "a closed worker is replaced"
    );
    assert!(connected, "connected state carries over (livekit/livekit#3173)");
    assert_eq!(table.worker_count(), 2, "the replaced worker waits for its last flush");
}

#[test]
fn workers_are_keyed_by_room_and_participant() {
    let table = WorkerTable::default();
    let create = |room: &str, name: &str| {
        table.get_or_create(room, name, "PA_1", "alice", "g", UnixMillis(0), LOCAL_NODE, |_| {})
    };
    assert_eq!(create("RM_1", "one"), Obtained::Created);
    assert_eq!(
        create("RM_2", "two"),
        Obtained::Created,
        "the same participant id in another room is another worker (livekit/livekit#4323)"
    );
    assert_eq!(table.worker_count(), 2);
}

#[test]
fn a_full_table_refuses_new_keys_but_serves_existing_ones() {
    let table = WorkerTable::new(2);
    let node = NodeId(7);
    let get = |participant: &str, guard: &str, at: i64| {
        table.get_or_create("RM_1", "room", participant, "x", guard, UnixMillis(at), node, |_| {})
    };
    assert_eq!(get("PA_1", "g", 0), Obtained::Created);
    assert_eq!(get("PA_2", "g", 0), Obtained::Created);
    assert_eq!(get("PA_3", "g", 0), Obtained::Refused);
    assert_eq!(get("PA_1", "h", 1), Obtained::Existing);
    assert_eq!(table.limit_counters().refused, 1);
    // A closed worker is reaped by the flush after the cleanup wait, which frees its slot.
    table.with_worker(table.hash("RM_1", "PA_2"), "RM_1", "PA_2", |worker| {
        assert!(worker.unwrap().lock().close("g", UnixMillis(2)));
    });
    let flush = |now: i64| {
        let (mut out, mut idle) = (Vec::new(), Vec::new());
        let quality = crate::quality::Quality::new(&crate::quality::QualityConfig::default());
        for shard in table.shards() {
            table.take_shard(
                shard,
                UnixMillis(now),
                10,
                i64::MAX,
                &mut out,
                &mut idle,
                &mut Vec::new(),
                &quality,
                &mut Vec::new(),
                &mut Vec::new(),
            );
        }
    };
    flush(5);
    assert_eq!(get("PA_3", "g", 6), Obtained::Refused, "closed, not yet reaped");
    flush(20);
    assert_eq!(get("PA_3", "g", 21), Obtained::Created);
    assert_eq!(table.worker_count(), 2);
}

#[test]
fn flushes_close_idle_workers_and_drop_idle_tracks() {
    let table = WorkerTable::new(10);
    let node = NodeId(3);
    table.get_or_create("RM_1", "room", "PA_1", "x", "g", UnixMillis(0), node, |_| {});
    let flush = |now: i64| {
        let (mut out, mut idle) = (Vec::new(), Vec::new());
        let quality = crate::quality::Quality::new(&crate::quality::QualityConfig::default());
        for shard in table.shards() {
            table.take_shard(
                shard,
                UnixMillis(now),
                1_000_000,
                100,
                &mut out,
                &mut idle,
                &mut Vec::new(),
                &quality,
                &mut Vec::new(),
                &mut Vec::new(),
            );
        }
        idle.into_iter()
            .map(|(node, state)| {
                assert!(!state.open && state.guards.is_empty(), "the state says closed");
                node
            })
            .collect::<Vec<NodeId>>()
    };
    // The first flush sees the creation; 100 ms later without a touch is not yet idle.
    assert!(flush(1000).is_empty());
    assert!(flush(1100).is_empty());
    // A lifecycle touch (a guard joining) keeps it open.
    table.get_or_create("RM_1", "room", "PA_1", "x", "h", UnixMillis(1150), node, |_| {});
    assert!(flush(1200).is_empty());
    assert_eq!(flush(1301), vec![node], "idle for longer than 100 ms: closed, reported by node");
    assert!(flush(1500).is_empty(), "closed once");
    assert_eq!(table.limit_counters().closed_idle, 1);
}
