//! What the adapter remembers of one Janus server, in the form it is persisted: sessions and
//! their handles, rooms and their participants and tracks. It is everything a restarted service
//! needs to attribute a call's later events to the same room, participant and tracks.
//!
//! Left out on purpose (see [`crate::Adapter`]): the last counter report of each stream (the
//! first report after a restart becomes the new baseline, so at most one stats period is lost),
//! and the ICE states seen (a repeat after a restart counts once more as new).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::{MediaKind, Micros};

/// The version of the persisted form; a state of another version is not restored.
pub const STATE_VERSION: u32 = 1;

/// The state of one Janus server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EmitterState {
    /// The persisted form's version ([`STATE_VERSION`]).
    pub(crate) version: u32,
    /// The latest event time seen: the server's clock, as far as its events tell.
    pub(crate) clock: Micros,
    /// Sessions, by id.
    pub(crate) sessions: BTreeMap<u64, Session>,
    /// Rooms, by key: `videoroom:<room>` or `handle:<handle id>`.
    pub(crate) rooms: BTreeMap<String, Room>,
    /// The start of the room started last: each room starts strictly after it, so that no two
    /// rooms of the server derive the same sid (a room started again in the microsecond it
    /// ended, or a server clock set back, would).
    #[serde(default)]
    pub(crate) last_room_start: Micros,
}

/// A Janus session: a participant's connection, whatever rooms it is in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Its last event: it expires `session_idle_timeout` after.
    pub(crate) last_seen: Micros,
    /// Destroyed: its participants have left; it is kept until its handles are detached.
    #[serde(default)]
    pub(crate) closed: bool,
    /// Its plugin handles, by id.
    pub(crate) handles: BTreeMap<u64, Handle>,
}

/// A plugin handle, with its PeerConnection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handle {
    /// The plugin's package name.
    pub(crate) plugin: String,
    /// The application's opaque id, if any.
    pub(crate) opaque_id: Option<String>,
    /// What the handle is in its room.
    pub(crate) role: Role,
    /// When its current PeerConnection came up (`webrtcup`); `None` while it is not up.
    pub(crate) up_at: Option<Micros>,
}

/// What a handle is for the mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Role {
    /// Nothing yet (a VideoRoom handle before `joined` or `subscribing`), or nothing any more.
    #[default]
    None,
    /// A VideoRoom publisher in the room of this key.
    Publisher {
        /// The room's key.
        room: String,
    },
    /// A VideoRoom subscriber in the room of this key.
    Subscriber {
        /// The room's key.
        room: String,
        /// Its streams by mid: the feed each comes from.
        streams: BTreeMap<String, FeedStream>,
    },
    /// The one participant of its own room (EchoTest and the other plugins).
    Own {
        /// The room's key.
        room: String,
    },
    /// A handle whose participant has left, until it is detached: its last reports (Janus sends
    /// a final one per medium as it tears a PeerConnection down, after `destroyed`) still count
    /// for that participant (the core keeps a participant's stats worker collecting for a while
    /// after it leaves).
    Left(Box<LeftRole>),
}

/// What a handle whose participant left still needs to attribute its last reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeftRole {
    /// The room's sid.
    pub(crate) room_sid: String,
    /// The room's name.
    pub(crate) room_name: String,
    /// The participant's sid.
    pub(crate) participant_sid: String,
    /// Its feed, if it published.
    pub(crate) feed: Option<u64>,
    /// Its tracks when it left.
    pub(crate) tracks: BTreeMap<String, Track>,
    /// The role the handle had: publisher, subscriber or own.
    pub(crate) had: Role,
}

impl Role {
    /// The key of the handle's room, if it has one.
    pub(crate) fn room(&self) -> Option<&str> {
        match self {
            Role::None | Role::Left(_) => None,
            Role::Publisher { room } | Role::Subscriber { room, .. } | Role::Own { room } => {
                Some(room)
            }
        }
    }
}

/// A subscriber's stream: where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FeedStream {
    /// Audio, video or data.
    pub(crate) kind: MediaKind,
    /// The publisher's feed.
    pub(crate) feed: u64,
    /// The stream's mid at the publisher.
    pub(crate) feed_mid: String,
}

/// A room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Room {
    /// Its sid.
    pub(crate) sid: String,
    /// Its name: the VideoRoom room id as text, or `<plugin>-<handle id>`.
    pub(crate) name: String,
    /// When it started.
    pub(crate) started: Micros,
    /// A room of one handle: finished as soon as its participant leaves.
    pub(crate) own: bool,
    /// Its participants, by session id.
    pub(crate) participants: BTreeMap<u64, Participant>,
    /// Feed ids of its publishers, to the session each belongs to.
    pub(crate) feeds: BTreeMap<u64, u64>,
    /// Since when it has had no participant.
    pub(crate) empty_since: Option<Micros>,
    /// When its participant joined last: each participant joins strictly after it, so that no
    /// two participants of the room derive the same sid (a session that left and joined again in
    /// one microsecond, or a server clock set back, would).
    #[serde(default)]
    pub(crate) last_join: Micros,
}

/// A participant: one session in one room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Participant {
    /// Its sid.
    pub(crate) sid: String,
    /// Its identity: the display name, else the feed id, else the opaque id, else the session.
    pub(crate) identity: String,
    /// Its display name, if any.
    pub(crate) name: String,
    /// When it joined.
    pub(crate) joined: Micros,
    /// Whether one of its PeerConnections came up.
    pub(crate) active: bool,
    /// Its VideoRoom feed, if it publishes.
    pub(crate) feed: Option<u64>,
    /// Its publishing handle, if any.
    pub(crate) publisher: Option<u64>,
    /// Every handle of its session in the room.
    pub(crate) handles: BTreeSet<u64>,
    /// Its published tracks, by mid.
    pub(crate) tracks: BTreeMap<String, Track>,
}

/// A published track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Track {
    /// Its sid.
    pub(crate) sid: String,
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// Its codec as a MIME type (`video/VP8`), empty if not known.
    pub(crate) mime: String,
}
