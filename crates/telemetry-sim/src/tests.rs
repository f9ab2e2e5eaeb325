//! Pins what the simulator generates for a fixed seed: the number of calls of each kind and a
//! hash of every call's protobuf encoding, so a refactoring that changes one byte of the traffic
//! of `simulate --seed` fails here. Update the expectation (`UPDATE_EXPECT=1`) only when a change
//! of the traffic is intended.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use telemetry_core::UnixMillis;

use crate::{SimulateArgs, generate};

/// 2023-11-14T22:13:20Z: the end of the simulated time.
const END: UnixMillis = UnixMillis(1_700_000_000_000);

/// FNV-1a, 64 bits: a small stable hash that needs no dependency.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The calls' count per kind (the name of their oneof member) and their hash.
fn digest(args: &SimulateArgs) -> String {
    let calls = generate(args, END);
    let mut hash = 0xcbf2_9ce4_8422_2325;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        hash = fnv1a(hash, &call.encode_length_delimited_to_vec());
        let member = call.call.as_ref().map(|member| format!("{member:?}")).unwrap_or_default();
        let kind = member.split('(').next().unwrap_or_default().to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    let mut text = format!("{} calls, hash {hash:016x}\n", calls.len());
    for (kind, count) in kinds {
        text.push_str(&format!("{kind}: {count}\n"));
    }
    text
}

#[test]
fn the_traffic_of_a_seed_does_not_change() {
    let args = SimulateArgs {
        seed: 42,
        rooms: 3,
        participants: 5,
        duration: Duration::from_secs(600),
        ..SimulateArgs::default()
    };
    expect_test::expect![[r#"
        11116 calls, hash 86b3ece905d1ed6c
        EgressEnded: 1
        EgressStarted: 1
        LocalRoomState: 20
        ParticipantActive: 15
        ParticipantJoined: 15
        ParticipantLeft: 15
        ParticipantResumed: 3
        RoomEnded: 3
        RoomStarted: 3
        TrackMuted: 48
        TrackPublishRequested: 30
        TrackPublished: 30
        TrackStats: 10618
        TrackSubscribeRequested: 120
        TrackSubscribed: 120
        TrackUnmuted: 44
        TrackUnpublished: 30
    "#]]
    .assert_eq(&digest(&args));
}

#[test]
fn the_default_traffic_does_not_change() {
    expect_test::expect![[r#"
        1281 calls, hash 95e6b8ca11f3fba1
        EgressEnded: 1
        EgressStarted: 1
        LocalRoomState: 4
        ParticipantActive: 10
        ParticipantJoined: 12
        ParticipantLeft: 12
        ParticipantResumed: 2
        RoomEnded: 3
        RoomStarted: 3
        TrackMuted: 4
        TrackPublishRequested: 20
        TrackPublished: 20
        TrackStats: 1061
        TrackSubscribeRequested: 52
        TrackSubscribed: 52
        TrackUnmuted: 4
        TrackUnpublished: 20
    "#]]
    .assert_eq(&digest(&SimulateArgs::default()));
}
