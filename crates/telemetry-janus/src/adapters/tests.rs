//! Tests of what `Adapters` carries over a forgotten adapter: snapshot generations and room
//! starts, across restores too, and the bound on what it remembers.

use serde_json::{Value, json};
use telemetry_core::Call;

use super::*;
use crate::config::AdapterLimits;
use crate::event::decode;

const T0: Micros = 1_795_510_450_000_000;
const SECOND: Micros = 1_000_000;

fn event(emitter: &str, value: Value) -> Event {
    let mut value = value;
    value["emitter"] = json!(emitter);
    decode(&value).unwrap_or_else(|error| panic!("{value}: {error}"))
}

/// A VideoRoom room `created` or `destroyed` by the plugin.
fn room(emitter: &str, what: &str, at: Micros) -> Event {
    event(
        emitter,
        json!({"type": 64, "timestamp": at, "event": {"plugin": crate::VIDEOROOM,
            "data": {"event": what, "room": 1234}}}),
    )
}

/// Janus started again: it ends every room and session of its server.
fn core_started(emitter: &str, at: Micros) -> Event {
    event(
        emitter,
        json!({"type": 256, "subtype": 1, "timestamp": at, "event": {"status": "started"}}),
    )
}

/// Applies `events`; returns the sids of the rooms started.
fn started(adapters: &mut Adapters, events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for event in events {
        adapters.apply(event, &mut out).unwrap_or_else(|error| panic!("{event:?}: {error}"));
    }
    out.into_iter()
        .filter_map(|emitted| match emitted.call {
            Call::RoomStarted { room } => Some(room.sid),
            _ => None,
        })
        .collect()
}

/// The store's rule: a server's snapshot replaces the kept one only if its generation is higher.
fn keep_newest(stored: &mut BTreeMap<String, Snapshot>, snapshots: Vec<Snapshot>) {
    for snapshot in snapshots {
        if stored.get(&snapshot.emitter).is_none_or(|kept| kept.generation < snapshot.generation) {
            stored.insert(snapshot.emitter.clone(), snapshot);
        }
    }
}

/// Found by the `janus_adapter` fuzz target: Janus restarting (`core.started`) left the adapter
/// empty, so it was forgotten, and the room made again in that microsecond by a new adapter
/// derived the sid of the room that had just ended. The new adapter now starts its rooms after
/// the forgotten one's last, in this process and after a restore of the empty state.
#[test]
fn a_server_forgotten_and_reporting_again_gets_rooms_with_sids_of_their_own() {
    let mut adapters = Adapters::new(AdapterConfig::default());
    let mut stored = BTreeMap::new();
    let first = started(&mut adapters, &[room("a", "created", T0), core_started("a", T0)]);
    keep_newest(&mut stored, adapters.take_snapshots());
    assert!(adapters.is_empty(), "the empty adapter is forgotten");
    let second = started(&mut adapters, &[room("a", "created", T0)]);
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0], second[0], "a room of its own");

    // A restart of the service, with the server's clock set back: the stored state is empty, so
    // no adapter is restored, but the next room still starts after the last.
    let _ = started(&mut adapters, &[core_started("a", T0)]);
    keep_newest(&mut stored, adapters.take_snapshots());
    let mut restarted = Adapters::new(AdapterConfig::default());
    for snapshot in stored.values() {
        assert!(!restarted.restore(snapshot, UnixMillis(0)).expect("restores"), "nothing held");
    }
    let third = started(&mut restarted, &[room("a", "created", T0 - SECOND)]);
    assert_eq!(third.len(), 1);
    assert!(third[0] != first[0] && third[0] != second[0], "{first:?} {second:?} {third:?}");
}

/// The store keeps a server's newest generation only. A forgotten adapter's last snapshot must
/// not outrank the states of the adapter made when its server reports again, or the next
/// restart restores the forgotten, empty state and the calls in progress are lost.
#[test]
fn a_new_adapter_s_states_replace_its_forgotten_predecessor_s_in_the_store_across_restarts() {
    let mut adapters = Adapters::new(AdapterConfig::default());
    let mut stored = BTreeMap::new();
    for step in 0..5 {
        let _ = started(&mut adapters, &[room("a", "created", T0 + step * SECOND)]);
        keep_newest(&mut stored, adapters.take_snapshots());
        let _ = started(&mut adapters, &[room("a", "destroyed", T0 + step * SECOND)]);
        keep_newest(&mut stored, adapters.take_snapshots());
    }
    assert!(adapters.is_empty());
    // The server reports again: a room of the new adapter, then a restart of the service.
    let open = started(&mut adapters, &[room("a", "created", T0 + 10 * SECOND)]);
    keep_newest(&mut stored, adapters.take_snapshots());
    let mut restarted = Adapters::new(AdapterConfig::default());
    assert!(restarted.restore(&stored["a"], UnixMillis(0)).expect("restores"));
    assert_eq!(restarted.sizes(), (0, 1), "the open room is back");
    // Restored, it ends the same room; a state it hands out is newer than every stored one.
    let mut out = Vec::new();
    restarted.apply(&room("a", "destroyed", T0 + 11 * SECOND), &mut out).expect("applies");
    assert!(
        matches!(&out[..], [Emitted { call: Call::RoomEnded { room }, .. }] if room.sid == open[0]),
        "{out:?}"
    );
    let newer = restarted.take_snapshots();
    assert!(newer[0].generation > stored["a"].generation);

    // Generations follow every server's, and a snapshot that cannot be read counts too.
    let mut restarted = Adapters::new(AdapterConfig::default());
    let corrupt = Snapshot { emitter: "b".to_owned(), generation: 99, state: "{".to_owned() };
    assert!(restarted.restore(&corrupt, UnixMillis(0)).is_err());
    let _ = started(&mut restarted, &[room("b", "created", T0)]);
    assert_eq!(restarted.take_snapshots()[0].generation, 100);
}

/// What is remembered of forgotten servers is bounded by `max_emitters`: the earliest last
/// room starts are dropped first.
#[test]
fn forgotten_servers_remembered_are_at_most_max_emitters() {
    let config = AdapterConfig {
        limits: AdapterLimits { max_emitters: 3, ..AdapterLimits::default() },
        ..AdapterConfig::default()
    };
    let mut adapters = Adapters::new(config);
    for server in 0..10_u64 {
        let emitter = format!("janus-{server}");
        let at = T0 + server * SECOND;
        let _ =
            started(&mut adapters, &[room(&emitter, "created", at), core_started(&emitter, at)]);
        let _ = adapters.take_snapshots();
        assert!(adapters.is_empty());
    }
    let mut kept: Vec<&String> = adapters.last_room_starts.keys().collect();
    kept.sort();
    assert_eq!(kept, ["janus-7", "janus-8", "janus-9"]);
    // A remembered server's start is taken by its new adapter.
    let _ = started(&mut adapters, &[room("janus-9", "created", T0)]);
    assert_eq!(adapters.last_room_starts.len(), 2);
    assert_eq!(adapters.get("janus-9").map(Adapter::last_room_start), Some(T0 + 9 * SECOND + 1));
}
