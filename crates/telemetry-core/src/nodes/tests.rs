//! Unit tests of the node table: interning, the limit, idle expiry, pinned nodes.

use super::*;

const IDLE: i64 = 60_000;
const EVICT: i64 = 10_000;

#[test]
fn interns_names_and_keeps_the_local_node() {
    let table = NodeTable::new("local", 2, IDLE, EVICT);
    let a = table.get_or_register("a", UnixMillis(1)).unwrap();
    assert_eq!(table.get_or_register("a", UnixMillis(2)).unwrap(), a);
    assert_ne!(a, LOCAL_NODE);
    assert_eq!(table.name(LOCAL_NODE).as_deref(), Some("local"));
    assert_eq!(table.get_or_register("local", UnixMillis(3)).unwrap(), LOCAL_NODE);
    assert_eq!(table.counters().live, 1, "the local node is not counted");
}

#[test]
fn refuses_new_nodes_beyond_the_limit_and_counts_them() {
    let table = NodeTable::new("local", 2, IDLE, EVICT);
    table.get_or_register("a", UnixMillis(0)).unwrap();
    table.get_or_register("b", UnixMillis(0)).unwrap();
    let refused = table.get_or_register("c", UnixMillis(0)).unwrap_err();
    assert_eq!(refused.max, 2);
    assert!(refused.to_string().contains("limits.max_nodes"), "{refused}");
    assert!(refused.to_string().contains("in the last 10 s"), "{refused}");
    // Known nodes still resolve, and pinned ones are never refused.
    table.get_or_register("a", UnixMillis(0)).unwrap();
    table.pinned("webhook", UnixMillis(0));
    assert_eq!(table.counters(), NodeCounters { live: 2, refused: 1, expired: 0 });
}

#[test]
fn forgets_idle_nodes_and_never_reuses_their_ids() {
    let table = NodeTable::new("local", 2, IDLE, EVICT);
    let a = table.get_or_register("a", UnixMillis(0)).unwrap();
    let b = table.get_or_register("b", UnixMillis(0)).unwrap();
    let webhook = table.pinned("webhook", UnixMillis(0));
    // b stays active; a goes quiet.
    table.get_or_register("b", UnixMillis(IDLE)).unwrap();
    assert!(table.expire(UnixMillis(IDLE)).is_empty(), "not idle for longer than the timeout yet");
    assert_eq!(table.expire(UnixMillis(IDLE + 1)), vec![a]);
    assert_eq!(table.name(a), None);
    assert_eq!(table.name(webhook).as_deref(), Some("webhook"), "pinned nodes never expire");
    assert_eq!(table.name(LOCAL_NODE).as_deref(), Some("local"));
    // Room for a new node again; a's name comes back under a new id.
    let c = table.get_or_register("c", UnixMillis(IDLE + 2)).unwrap();
    let a_again = table.get_or_register("a", UnixMillis(IDLE + 2)).unwrap_err();
    assert_eq!(a_again.max, 2);
    assert!(c > b);
    assert_eq!(table.counters(), NodeCounters { live: 2, refused: 1, expired: 1 });
    let fallback: Arc<str> = "gone".into();
    assert_eq!(&*table.reader().get(a, &fallback), "gone");
    assert_eq!(&*table.reader().get(c, &fallback), "c");
}

#[test]
fn a_full_table_lets_a_new_node_push_out_the_one_idle_longest() {
    let table = NodeTable::new("local", 2, IDLE, EVICT);
    let a = table.get_or_register("a", UnixMillis(0)).unwrap();
    let b = table.get_or_register("b", UnixMillis(5_000)).unwrap();
    assert!(table.get_or_register("c", UnixMillis(10_000)).is_err(), "a is idle 10 s, not more");
    let c = table.get_or_register("c", UnixMillis(10_001)).expect("a is pushed out");
    assert_eq!(table.name(a), None);
    assert!(table.get_or_register("d", UnixMillis(10_002)).is_err(), "b was seen 5 s ago");
    // b keeps reporting: never pushed out.
    table.get_or_register("b", UnixMillis(14_000)).unwrap();
    assert!(table.get_or_register("d", UnixMillis(20_001)).is_err(), "c is idle 10 s, b 6 s");
    let d = table.get_or_register("d", UnixMillis(20_002)).expect("c is pushed out");
    assert_eq!(table.reader().get(b, &"gone".into()).as_ref(), "b");
    // The next expiry hands the pushed-out ids over for their state to go, once.
    assert_eq!(table.expire(UnixMillis(20_004)), vec![a, c]);
    assert!(table.expire(UnixMillis(20_005)).is_empty());
    assert_eq!(table.counters(), NodeCounters { live: 2, refused: 3, expired: 2 });
    assert!(d > c);
}
