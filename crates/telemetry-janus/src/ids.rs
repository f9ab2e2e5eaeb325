//! The sids the adapter gives rooms, participants and tracks: LiveKit's format (a prefix and 12
//! base57 characters), derived from what identifies the thing in Janus, so that they are the
//! same however often they are derived (an adapter restored from an older state, a test replaying
//! a capture) and differ between two lives of one room or one participant.
//!
//! A sid is the prefix and the first 12 base57 digits of the SHA-256 of its parts, each ended by
//! a zero byte. 57^12 (about 2^70) values make a collision between the sids of one deployment
//! unlikely enough to be ignored.

use sha2::{Digest, Sha256};
use telemetry_core::ids::{BASE57_ALPHABET, ID_RANDOM_LEN};
use telemetry_core::keys::DATA_CHANNEL_TRACK_PREFIX;

use crate::event::Micros;

/// The sid of a room: its emitter, its key in the adapter and when it started.
pub fn room_sid(emitter: &str, room_key: &str, started: Micros) -> String {
    derive("RM_", &[b"room", emitter.as_bytes(), room_key.as_bytes(), &started.to_be_bytes()])
}

/// The sid of a participant: its room, its Janus session and when it joined.
pub fn participant_sid(room_sid: &str, session_id: u64, joined: Micros) -> String {
    derive(
        "PA_",
        &[b"participant", room_sid.as_bytes(), &session_id.to_be_bytes(), &joined.to_be_bytes()],
    )
}

/// The sid of a track: its room, the feed (VideoRoom) or handle (other plugins) that publishes it,
/// and its mid there. A subscriber's stream names its feed and the feed's mid, so both sides
/// derive the same sid.
pub fn track_sid(room_sid: &str, publisher: u64, mid: &str) -> String {
    derive("TR_", &[b"track", room_sid.as_bytes(), &publisher.to_be_bytes(), mid.as_bytes()])
}

/// The pseudo track of a participant's data-channel bytes (LiveKit's `TR_DT` prefix, which makes
/// the core count them as data, not media).
pub fn data_track_sid(participant_sid: &str) -> String {
    derive(DATA_CHANNEL_TRACK_PREFIX, &[b"data", participant_sid.as_bytes()])
}

fn derive(prefix: &str, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut number = u128::from_be_bytes(digest[..16].try_into().expect("a SHA-256 has 32 bytes"));
    let mut sid = String::with_capacity(prefix.len() + ID_RANDOM_LEN);
    sid.push_str(prefix);
    for _ in 0..ID_RANDOM_LEN {
        let digit = (number % BASE57_ALPHABET.len() as u128) as usize;
        number /= BASE57_ALPHABET.len() as u128;
        sid.push(char::from(BASE57_ALPHABET[digit]));
    }
    sid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_stable_prefixed_and_distinct() {
        let room = room_sid("janus-1", "videoroom:1234", 1_795_510_484_352_078);
        assert_eq!(room, room_sid("janus-1", "videoroom:1234", 1_795_510_484_352_078));
        assert!(room.starts_with("RM_") && room.len() == 15, "{room}");
        assert_ne!(room, room_sid("janus-1", "videoroom:1234", 1_795_510_484_352_079));
        assert_ne!(room, room_sid("janus-2", "videoroom:1234", 1_795_510_484_352_078));
        let participant = participant_sid(&room, 42, 7);
        assert!(participant.starts_with("PA_") && participant.len() == 15);
        assert_ne!(participant, participant_sid(&room, 43, 7));
        let track = track_sid(&room, 42, "0");
        assert!(track.starts_with("TR_") && track.len() == 15);
        assert_ne!(track, track_sid(&room, 42, "1"));
        let data = data_track_sid(&participant);
        assert!(data.starts_with("TR_DT") && data.len() == 17);
        assert!(room[3..].bytes().all(|byte| BASE57_ALPHABET.contains(&byte)));
    }
}
