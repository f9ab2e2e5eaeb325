//! The state machine of one Janus server (one `emitter`): its events in, `TelemetryService`
//! calls out, by the mapping of DESIGN.md ("Janus ingest") documented in the crate's root.
//!
//! An [`Adapter`] applies one event at a time ([`Adapter::apply`]) and the passing of time
//! ([`Adapter::tick`]); each returns the calls it caused, stamped with the event's time (or, for
//! a room finished by its idle timeout, the moment the timeout ran out). It never fails for
//! environmental reasons and does no IO: what to persist is handed out as a [`Snapshot`] when the
//! state changed, and a restarted service gives it back to [`Adapter::restore`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use telemetry_core::proto as lk;
use telemetry_core::{Call, DEFAULT_GUARD, Direction, StatsKey, UnixMillis};

use crate::config::AdapterConfig;
use crate::event::{
    Body, Event, EventError, MediaKind, MediaReport, Micros, PluginData, PublishedStream,
    SubscribedStream, VideoRoomEvent, error,
};
use crate::ids;
use crate::state::{
    EmitterState, FeedStream, Handle, LeftRole, Participant, Role, Room, STATE_VERSION, Session,
    Track,
};
use crate::stats::{self, Counts, Step};

/// The VideoRoom plugin's package name.
pub const VIDEOROOM: &str = "janus.plugin.videoroom";

/// One call the adapter made, for the core.
#[derive(Clone, Debug, PartialEq)]
pub struct Emitted {
    /// The node: the event's `emitter`.
    pub node: Arc<str>,
    /// When: the event's time.
    pub at: UnixMillis,
    /// The call.
    pub call: Call,
}

/// What an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It changed what the adapter knows, or made calls.
    Accepted,
    /// It carried nothing for telemetry: a transport request, a repeated ICE state, an event of a
    /// handle or session the adapter does not know, a repeat of an event already applied.
    Ignored,
}

/// What the adapter counts besides events: refusals by its caps, sessions expired, counters
/// that started again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events of a new Janus server refused by `max_emitters`.
    pub refused_emitters: u64,
    /// New sessions refused by `max_sessions`.
    pub refused_sessions: u64,
    /// New handles refused by `max_handles_per_session`.
    pub refused_handles: u64,
    /// New rooms refused by `max_rooms`.
    pub refused_rooms: u64,
    /// New tracks or subscribed streams refused by `max_streams_per_handle`.
    pub refused_streams: u64,
    /// Sessions taken as gone after `session_idle_timeout` without an event.
    pub sessions_expired: u64,
    /// Media counters that went back (a new PeerConnection without a `webrtcup` seen): a new
    /// baseline instead of a negative sample.
    pub counter_resets: u64,
}

impl Counters {
    /// Adds `other`.
    pub fn add(&mut self, other: &Counters) {
        self.refused_emitters += other.refused_emitters;
        self.refused_sessions += other.refused_sessions;
        self.refused_handles += other.refused_handles;
        self.refused_rooms += other.refused_rooms;
        self.refused_streams += other.refused_streams;
        self.sessions_expired += other.sessions_expired;
        self.counter_resets += other.counter_resets;
    }
}

/// An adapter's persisted state: what [`Adapter::restore`] takes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The Janus server.
    pub emitter: String,
    /// Increases with every snapshot of this server's adapter, across restarts and across
    /// adapters forgotten and made again ([`crate::Adapters`]): of two, the higher is the newer.
    pub generation: u64,
    /// The state, as JSON.
    pub state: String,
}

/// Why a snapshot cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The JSON does not hold a state.
    #[error("the stored Janus adapter state of `{emitter}` cannot be read: {message}")]
    Corrupt {
        /// The Janus server.
        emitter: String,
        /// What is wrong.
        message: String,
    },
    /// The state is of a version this build does not know.
    #[error(
        "the stored Janus adapter state of `{emitter}` is of version {version}; this build knows {STATE_VERSION}"
    )]
    Version {
        /// The Janus server.
        emitter: String,
        /// Its version.
        version: u32,
    },
}

/// The state machine of one Janus server.
#[derive(Debug)]
pub struct Adapter {
    emitter: Arc<str>,
    config: AdapterConfig,
    state: EmitterState,
    /// The last counters of each stream, by handle, then mid, simulcast layer and direction;
    /// not persisted.
    baselines: HashMap<u64, BTreeMap<(String, u64, Direction), Counts>>,
    /// Handles whose `webrtcup` this process saw: their first reports count from it.
    fresh: HashSet<u64>,
    /// The ICE states seen of each handle's PeerConnection, as bits.
    ice_seen: HashMap<u64, u8>,
    counters: Counters,
    /// Whether the persisted state changed since the last snapshot.
    dirty: bool,
    generation: u64,
}

/// Calls being made, with the node and a time.
struct Out<'a> {
    node: &'a Arc<str>,
    calls: &'a mut Vec<Emitted>,
}

impl Out<'_> {
    fn push(&mut self, at: Micros, call: Call) {
        self.calls.push(Emitted { node: self.node.clone(), at: millis(at), call });
    }
}

/// Microseconds to the core's milliseconds.
fn millis(at: Micros) -> UnixMillis {
    UnixMillis(i64::try_from(at / 1000).unwrap_or(i64::MAX))
}

impl Adapter {
    /// An adapter for the Janus server `emitter`, knowing nothing yet.
    pub fn new(emitter: &str, config: AdapterConfig) -> Self {
        Self {
            emitter: emitter.into(),
            config,
            state: EmitterState { version: STATE_VERSION, ..EmitterState::default() },
            baselines: HashMap::new(),
            fresh: HashSet::new(),
            ice_seen: HashMap::new(),
            counters: Counters::default(),
            dirty: false,
            generation: 0,
        }
    }

    /// An adapter for the Janus server `emitter` whose earlier adapter was forgotten: its
    /// snapshots' generations follow `generation`, and its rooms start after `last_room_start`
    /// (see [`crate::Adapters`]).
    pub(crate) fn carrying_on(
        emitter: &str,
        config: AdapterConfig,
        generation: u64,
        last_room_start: Micros,
    ) -> Self {
        let mut adapter = Self::new(emitter, config);
        adapter.generation = generation;
        adapter.state.last_room_start = last_room_start;
        adapter
    }

    /// The start of the room started last (0 if none): the next room starts after it.
    pub(crate) fn last_room_start(&self) -> Micros {
        self.state.last_room_start
    }

    /// An adapter that carries on from `snapshot`, restored at `now`: every session is given a
    /// full `session_idle_timeout` from `now` to show it is alive. Counter baselines start
    /// afresh: the first report of each stream after the restart is a baseline.
    ///
    /// # Errors
    ///
    /// The snapshot does not hold a state of this version.
    pub fn restore(
        snapshot: &Snapshot,
        config: AdapterConfig,
        now: UnixMillis,
    ) -> Result<Self, RestoreError> {
        let mut state: EmitterState = serde_json::from_str(&snapshot.state).map_err(|error| {
            RestoreError::Corrupt { emitter: snapshot.emitter.clone(), message: error.to_string() }
        })?;
        if state.version != STATE_VERSION {
            return Err(RestoreError::Version {
                emitter: snapshot.emitter.clone(),
                version: state.version,
            });
        }
        let now = u64::try_from(now.0).unwrap_or(0).saturating_mul(1000);
        for session in state.sessions.values_mut() {
            session.last_seen = session.last_seen.max(now);
        }
        let mut adapter = Self::new(&snapshot.emitter, config);
        adapter.state = state;
        adapter.generation = snapshot.generation;
        Ok(adapter)
    }

    /// The Janus server.
    pub fn emitter(&self) -> &str {
        &self.emitter
    }

    /// What the adapter counted.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether the adapter holds no session and no room.
    pub fn is_empty(&self) -> bool {
        self.state.sessions.is_empty() && self.state.rooms.is_empty()
    }

    /// Whether the state changed since the last snapshot.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// How many sessions and rooms the adapter holds.
    pub fn sizes(&self) -> (usize, usize) {
        (self.state.sessions.len(), self.state.rooms.len())
    }

    /// The state to persist, if it changed since the last call.
    pub fn take_snapshot(&mut self) -> Option<Snapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.generation += 1;
        Some(Snapshot {
            emitter: self.emitter.to_string(),
            generation: self.generation,
            state: serde_json::to_string(&self.state).expect("the state serializes to JSON"),
        })
    }

    /// Applies one event of this adapter's Janus server, appending the calls it causes to `out`.
    ///
    /// # Errors
    ///
    /// The event lacks what its kind needs (the session and handle of a VideoRoom `joined`), or
    /// a cap refuses what it would create; nothing of it then takes effect beyond the calls
    /// already appended (a room started before its participant was refused, say).
    pub fn apply(&mut self, event: &Event, out: &mut Vec<Emitted>) -> Result<Applied, EventError> {
        debug_assert_eq!(event.emitter, *self.emitter);
        let node = self.emitter.clone();
        let mut out = Out { node: &node, calls: out };
        let now = event.timestamp;
        self.state.clock = self.state.clock.max(now);
        self.finish_idle_rooms(self.state.clock, &mut out);
        if let Some(session) = event.session_id.and_then(|id| self.state.sessions.get_mut(&id)) {
            session.last_seen = session.last_seen.max(now);
        }
        let ids = || -> Result<(u64, u64), EventError> {
            Ok((
                event.session_id.ok_or_else(|| error("session_id", "required"))?,
                event.handle_id.ok_or_else(|| error("handle_id", "required"))?,
            ))
        };
        let changed = match &event.body {
            Body::SessionCreated => {
                let session = event.session_id.ok_or_else(|| error("session_id", "required"))?;
                self.ensure_session(session, now)?
            }
            Body::SessionDestroyed => {
                let session = event.session_id.ok_or_else(|| error("session_id", "required"))?;
                self.close_session(session, now, &mut out)
            }
            Body::Attached { plugin } => {
                let (session, handle) = ids()?;
                self.attach(session, handle, plugin, event.opaque_id.as_deref(), now, &mut out)?
            }
            Body::Detached => {
                let (session, handle) = ids()?;
                self.detach(session, handle, now, &mut out)
            }
            Body::IceState(state) => {
                let (session, handle) = ids()?;
                self.handle(session, handle).is_some() && self.ice_state(handle, state)
            }
            Body::WebrtcUp => {
                let (session, handle) = ids()?;
                self.webrtc_up(session, handle, now, &mut out)?
            }
            Body::Hangup { .. } => {
                let (session, handle) = ids()?;
                self.hangup(session, handle, now, &mut out)
            }
            Body::MediaStats(reports) => {
                let (session, handle) = ids()?;
                let mut changed = false;
                for report in reports {
                    changed |= self.report(session, handle, report, now, &mut out)?;
                }
                changed
            }
            Body::Plugin { plugin, data: PluginData::VideoRoom(videoroom) } => {
                self.videoroom(event, plugin, videoroom, &mut out)?
            }
            Body::Plugin { data: PluginData::Other, .. } | Body::Other => false,
            Body::CoreStarted | Body::CoreShutdown => self.end_everything(now, &mut out),
        };
        Ok(if changed { Applied::Accepted } else { Applied::Ignored })
    }

    /// Lets time pass up to `now` (this service's clock): sessions without an event for
    /// `session_idle_timeout` end at their last event, and rooms empty for `room_idle_timeout`
    /// finish when it ran out.
    pub fn tick(&mut self, now: UnixMillis, out: &mut Vec<Emitted>) {
        let node = self.emitter.clone();
        let mut out = Out { node: &node, calls: out };
        let now = u64::try_from(now.0).unwrap_or(0).saturating_mul(1000).max(self.state.clock);
        let idle = self.config.session_idle_micros();
        let expired: Vec<(u64, Micros, bool)> = self
            .state
            .sessions
            .iter()
            .filter(|(_, session)| session.last_seen.saturating_add(idle) <= now)
            .map(|(&id, session)| (id, session.last_seen, session.closed))
            .collect();
        for (session, last_seen, closed) in expired {
            // A destroyed session whose handles were never detached is only forgotten.
            self.counters.sessions_expired += u64::from(!closed);
            self.end_session(session, last_seen, &mut out);
        }
        self.finish_idle_rooms(now, &mut out);
    }

    // === Sessions and handles ===

    fn handle(&self, session: u64, handle: u64) -> Option<&Handle> {
        self.state.sessions.get(&session)?.handles.get(&handle)
    }

    fn handle_mut(&mut self, session: u64, handle: u64) -> Option<&mut Handle> {
        self.state.sessions.get_mut(&session)?.handles.get_mut(&handle)
    }

    /// Makes sure the session exists; returns whether it was new.
    fn ensure_session(&mut self, session: u64, now: Micros) -> Result<bool, EventError> {
        if self.state.sessions.contains_key(&session) {
            return Ok(false);
        }
        let max = self.config.limits.max_sessions;
        if self.state.sessions.len() >= max {
            self.counters.refused_sessions += 1;
            return Err(error(
                "session_id",
                format!(
                    "a new session, but this Janus server has `janus.max_sessions` ({max}) sessions already"
                ),
            ));
        }
        self.state
            .sessions
            .insert(session, Session { last_seen: now, closed: false, handles: BTreeMap::new() });
        self.dirty = true;
        Ok(true)
    }

    /// Makes sure the handle exists (and its session); returns whether it was new.
    fn ensure_handle(
        &mut self,
        session: u64,
        handle: u64,
        plugin: &str,
        opaque_id: Option<&str>,
        now: Micros,
    ) -> Result<bool, EventError> {
        let new_session = self.ensure_session(session, now)?;
        let max = self.config.limits.max_handles_per_session;
        let handles = &mut self.state.sessions.get_mut(&session).expect("ensured").handles;
        if handles.contains_key(&handle) {
            return Ok(new_session);
        }
        if handles.len() >= max {
            self.counters.refused_handles += 1;
            return Err(error(
                "handle_id",
                format!(
                    "a new handle, but its session has `janus.max_handles_per_session` ({max}) handles already"
                ),
            ));
        }
        handles.insert(
            handle,
            Handle {
                plugin: plugin.to_owned(),
                opaque_id: opaque_id.map(str::to_owned),
                role: Role::None,
                up_at: None,
            },
        );
        self.dirty = true;
        Ok(true)
    }

    fn attach(
        &mut self,
        session: u64,
        handle: u64,
        plugin: &str,
        opaque_id: Option<&str>,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        if self.handle(session, handle).is_some() {
            return Ok(false);
        }
        self.ensure_handle(session, handle, plugin, opaque_id, now)?;
        if plugin != VIDEOROOM {
            self.start_own_room(session, handle, now, out)?;
        }
        Ok(true)
    }

    /// Starts the room of a handle of a plugin other than VideoRoom, with its one participant.
    fn start_own_room(
        &mut self,
        session: u64,
        handle: u64,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<(), EventError> {
        let Some(state) = self.handle(session, handle) else { return Ok(()) };
        let short = state.plugin.strip_prefix("janus.plugin.").unwrap_or(&state.plugin);
        let name = format!("{short}-{handle}");
        let identity = state.opaque_id.clone().unwrap_or_else(|| format!("session-{session}"));
        let key = format!("handle:{handle}");
        self.ensure_room(&key, &name, true, now, out)?;
        self.ensure_participant(&key, session, &identity, "", now, out);
        if let Some(participant) =
            self.state.rooms.get_mut(&key).and_then(|room| room.participants.get_mut(&session))
        {
            participant.handles.insert(handle);
        }
        let state = self.handle_mut(session, handle).expect("checked above");
        state.role = Role::Own { room: key.clone() };
        if state.up_at.is_some() {
            self.activate(&key, session, now, out);
        }
        self.dirty = true;
        Ok(())
    }

    fn detach(&mut self, session: u64, handle: u64, now: Micros, out: &mut Out<'_>) -> bool {
        let Some(state) =
            self.state.sessions.get_mut(&session).and_then(|s| s.handles.remove(&handle))
        else {
            return false;
        };
        self.forget_media(handle);
        self.dirty = true;
        if let Some(state) = self.state.sessions.get(&session)
            && state.closed
            && state.handles.is_empty()
        {
            self.state.sessions.remove(&session);
        }
        match state.role {
            Role::None | Role::Left(_) => {}
            Role::Publisher { room } => {
                let publishes = self
                    .participant(&room, session)
                    .is_some_and(|participant| participant.publisher == Some(handle));
                if publishes {
                    self.leave(&room, session, now, out);
                }
            }
            Role::Subscriber { room, .. } => {
                let alone = self
                    .state
                    .rooms
                    .get_mut(&room)
                    .and_then(|room| room.participants.get_mut(&session))
                    .map(|participant| {
                        participant.handles.remove(&handle);
                        participant.publisher.is_none() && participant.handles.is_empty()
                    });
                if alone == Some(true) {
                    self.leave(&room, session, now, out);
                }
            }
            Role::Own { room } => {
                self.leave(&room, session, now, out);
            }
        }
        true
    }

    /// A session was destroyed: it leaves every room it is in now, and is kept until its handles
    /// are detached (their last reports still count).
    fn close_session(&mut self, session: u64, at: Micros, out: &mut Out<'_>) -> bool {
        match self.state.sessions.get_mut(&session) {
            None => return false,
            Some(state) if state.closed => return false,
            Some(state) => state.closed = true,
        }
        self.leave_every_room(session, at, out);
        if self.state.sessions.get(&session).is_some_and(|state| state.handles.is_empty()) {
            self.state.sessions.remove(&session);
        }
        self.dirty = true;
        true
    }

    /// Ends a session at once: its handles are detached and it leaves every room it is in.
    fn end_session(&mut self, session: u64, at: Micros, out: &mut Out<'_>) -> bool {
        let Some(handles) = self
            .state
            .sessions
            .get(&session)
            .map(|s| s.handles.keys().copied().collect::<Vec<_>>())
        else {
            return false;
        };
        for handle in handles {
            self.detach(session, handle, at, out);
        }
        self.leave_every_room(session, at, out);
        self.state.sessions.remove(&session);
        self.dirty = true;
        true
    }

    /// The session leaves every room it is in.
    fn leave_every_room(&mut self, session: u64, at: Micros, out: &mut Out<'_>) {
        let rooms: Vec<String> = self
            .state
            .rooms
            .iter()
            .filter(|(_, room)| room.participants.contains_key(&session))
            .map(|(key, _)| key.clone())
            .collect();
        for room in rooms {
            self.leave(&room, session, at, out);
        }
    }

    /// Janus started or is shutting down: every session ends and every room finishes now.
    fn end_everything(&mut self, at: Micros, out: &mut Out<'_>) -> bool {
        if self.is_empty() {
            return false;
        }
        let sessions: Vec<u64> = self.state.sessions.keys().copied().collect();
        for session in sessions {
            self.end_session(session, at, out);
        }
        let rooms: Vec<String> = self.state.rooms.keys().cloned().collect();
        for room in rooms {
            self.finish_room(&room, at, out);
        }
        true
    }

    fn forget_media(&mut self, handle: u64) {
        self.baselines.remove(&handle);
        self.fresh.remove(&handle);
        self.ice_seen.remove(&handle);
    }

    // === PeerConnections ===

    /// Records an ICE state; returns whether it is new for the handle's PeerConnection.
    fn ice_state(&mut self, handle: u64, state: &str) -> bool {
        let bit = match state {
            "gathering" => 1,
            "connecting" => 2,
            "connected" => 4,
            "ready" => 8,
            "failed" => 16,
            "disconnected" => 32,
            _ => 64,
        };
        let seen = self.ice_seen.entry(handle).or_default();
        let new = *seen & bit == 0;
        *seen |= bit;
        new
    }

    fn webrtc_up(
        &mut self,
        session: u64,
        handle: u64,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let Some(state) = self.handle_mut(session, handle) else { return Ok(false) };
        if state.up_at.is_some() {
            return Ok(false);
        }
        state.up_at = Some(now);
        let own_plugin = state.plugin != VIDEOROOM;
        let role = state.role.clone();
        self.dirty = true;
        // Reports older than this `webrtcup` were of an earlier PeerConnection; a later one (an
        // event overtaken by its report) is of this one, and stays its baseline.
        if let Some(baselines) = self.baselines.get_mut(&handle) {
            baselines.retain(|_, baseline| baseline.at > now);
        }
        self.fresh.insert(handle);
        match role.room() {
            Some(room) => self.activate(room, session, now, out),
            // A handle whose own room ended with an earlier PeerConnection starts a new one.
            None if own_plugin => self.start_own_room(session, handle, now, out)?,
            None => {}
        }
        Ok(true)
    }

    fn hangup(&mut self, session: u64, handle: u64, now: Micros, out: &mut Out<'_>) -> bool {
        let Some(state) = self.handle_mut(session, handle) else { return false };
        let was_up = state.up_at.take().is_some();
        let role = state.role.clone();
        self.forget_media(handle);
        let left = match role {
            Role::Publisher { room } => {
                let publishes = self
                    .participant(&room, session)
                    .is_some_and(|participant| participant.publisher == Some(handle));
                publishes && self.leave(&room, session, now, out)
            }
            Role::Own { room } => self.leave(&room, session, now, out),
            Role::Subscriber { .. } | Role::None | Role::Left(_) => false,
        };
        if was_up || left {
            self.dirty = true;
        }
        was_up || left
    }

    // === Rooms and participants ===

    fn participant(&self, room: &str, session: u64) -> Option<&Participant> {
        self.state.rooms.get(room)?.participants.get(&session)
    }

    /// Makes sure the room exists, starting it now if not; returns whether it was new.
    fn ensure_room(
        &mut self,
        key: &str,
        name: &str,
        own: bool,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        if self.state.rooms.contains_key(key) {
            return Ok(false);
        }
        let max = self.config.limits.max_rooms;
        if self.state.rooms.len() >= max {
            self.counters.refused_rooms += 1;
            return Err(error(
                if own { "handle_id" } else { "event.data.room" },
                format!(
                    "a new room, but this Janus server has `janus.max_rooms` ({max}) rooms already"
                ),
            ));
        }
        // Strictly after the room started last, so that its sid is new.
        let started = now.max(self.state.last_room_start.saturating_add(1));
        self.state.last_room_start = started;
        let room = Room {
            sid: ids::room_sid(&self.emitter, key, started),
            name: name.to_owned(),
            started,
            own,
            participants: BTreeMap::new(),
            feeds: BTreeMap::new(),
            empty_since: None,
            last_join: 0,
        };
        out.push(now, Call::RoomStarted { room: lk_room(&room) });
        self.state.rooms.insert(key.to_owned(), room);
        self.dirty = true;
        Ok(true)
    }

    /// Makes sure the session is a participant of the room (which exists), joining it now if
    /// not; returns whether it was new.
    fn ensure_participant(
        &mut self,
        key: &str,
        session: u64,
        identity: &str,
        name: &str,
        now: Micros,
        out: &mut Out<'_>,
    ) -> bool {
        let Some(room) = self.state.rooms.get_mut(key) else { return false };
        if room.participants.contains_key(&session) {
            return false;
        }
        // Strictly after the participant who joined last, so that its sid is new.
        let joined = now.max(room.last_join.saturating_add(1));
        room.last_join = joined;
        let participant = Participant {
            sid: ids::participant_sid(&room.sid, session, joined),
            identity: identity.to_owned(),
            name: name.to_owned(),
            joined,
            active: false,
            feed: None,
            publisher: None,
            handles: BTreeSet::new(),
            tracks: BTreeMap::new(),
        };
        room.empty_since = None;
        let info = lk_participant(&participant, lk::participant_info::State::Joined);
        room.participants.insert(session, participant);
        out.push(
            now,
            Call::ParticipantJoined {
                room: lk_room(room),
                participant: info,
                client_info: None,
                client_meta: None,
                should_send_event: true,
                guard: DEFAULT_GUARD.to_owned(),
            },
        );
        self.dirty = true;
        true
    }

    /// Marks the participant active (its PeerConnection came up), once.
    fn activate(&mut self, key: &str, session: u64, now: Micros, out: &mut Out<'_>) {
        let Some(room) = self.state.rooms.get_mut(key) else { return };
        let Some(participant) = room.participants.get_mut(&session) else { return };
        if participant.active {
            return;
        }
        participant.active = true;
        let info = lk_participant(participant, lk::participant_info::State::Active);
        out.push(
            now,
            Call::ParticipantActive {
                room: lk_room(room),
                participant: info,
                client_meta: None,
                is_migration: false,
                guard: DEFAULT_GUARD.to_owned(),
            },
        );
        self.dirty = true;
    }

    /// Unpublishes a participant's tracks; returns whether it had any.
    fn unpublish(&mut self, key: &str, session: u64, now: Micros, out: &mut Out<'_>) -> bool {
        let Some(room) = self.state.rooms.get_mut(key) else { return false };
        let Some(participant) = room.participants.get_mut(&session) else { return false };
        if participant.tracks.is_empty() {
            return false;
        }
        let tracks = std::mem::take(&mut participant.tracks);
        let (participant_id, identity) = (participant.sid.clone(), participant.identity.clone());
        let lk_room = lk_room(room);
        for (mid, track) in &tracks {
            out.push(
                now,
                Call::TrackUnpublished {
                    room: lk_room.clone(),
                    participant_id: participant_id.clone(),
                    identity: identity.clone(),
                    track: lk_track(track, mid),
                    was_published_locally: true,
                    should_send_event: true,
                },
            );
        }
        self.dirty = true;
        true
    }

    /// The participant leaves the room: its tracks are unpublished, its handles there lose their
    /// role, and an own room finishes with it (a VideoRoom room waits `room_idle_timeout`).
    /// Returns whether it was there.
    fn leave(&mut self, key: &str, session: u64, now: Micros, out: &mut Out<'_>) -> bool {
        let tracks = match self.participant(key, session) {
            Some(participant) => participant.tracks.clone(),
            None => return false,
        };
        self.unpublish(key, session, now, out);
        let Some(room) = self.state.rooms.get_mut(key) else { return false };
        let Some(participant) = room.participants.remove(&session) else { return false };
        if let Some(feed) = participant.feed {
            room.feeds.remove(&feed);
        }
        out.push(
            now,
            Call::ParticipantLeft {
                room: lk_room(room),
                participant: lk_participant(
                    &participant,
                    lk::participant_info::State::Disconnected,
                ),
                should_send_event: true,
                guard: DEFAULT_GUARD.to_owned(),
            },
        );
        let empty = room.participants.is_empty();
        let own = room.own;
        if empty && !own {
            room.empty_since = Some(now);
        }
        let (room_sid, room_name) = (room.sid.clone(), room.name.clone());
        if let Some(handles) = self.state.sessions.get_mut(&session).map(|s| &mut s.handles) {
            for handle in &participant.handles {
                if let Some(state) = handles.get_mut(handle)
                    && state.role.room() == Some(key)
                {
                    let had = std::mem::take(&mut state.role);
                    state.role = Role::Left(Box::new(LeftRole {
                        room_sid: room_sid.clone(),
                        room_name: room_name.clone(),
                        participant_sid: participant.sid.clone(),
                        feed: participant.feed,
                        tracks: tracks.clone(),
                        had,
                    }));
                }
            }
        }
        if empty && own {
            self.finish_room(key, now, out);
        }
        self.dirty = true;
        true
    }

    /// Finishes a room now: everyone still in it leaves, then it ends.
    fn finish_room(&mut self, key: &str, at: Micros, out: &mut Out<'_>) -> bool {
        let sessions: Vec<u64> = match self.state.rooms.get(key) {
            Some(room) => room.participants.keys().copied().collect(),
            None => return false,
        };
        for session in sessions {
            self.leave(key, session, at, out);
        }
        if let Some(room) = self.state.rooms.remove(key) {
            out.push(at, Call::RoomEnded { room: lk_room(&room) });
        }
        self.dirty = true;
        true
    }

    /// Finishes the VideoRoom rooms empty for `room_idle_timeout` by `now`, at the moment it ran
    /// out.
    fn finish_idle_rooms(&mut self, now: Micros, out: &mut Out<'_>) {
        let idle = self.config.room_idle_micros();
        let due: Vec<(String, Micros)> = self
            .state
            .rooms
            .iter()
            .filter_map(|(key, room)| {
                let deadline = room.empty_since?.saturating_add(idle);
                (room.participants.is_empty() && deadline <= now).then(|| (key.clone(), deadline))
            })
            .collect();
        for (key, deadline) in due {
            self.finish_room(&key, deadline, out);
        }
    }

    // === VideoRoom ===

    fn videoroom(
        &mut self,
        event: &Event,
        plugin: &str,
        videoroom: &VideoRoomEvent,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let now = event.timestamp;
        let ids = || -> Result<(u64, u64), EventError> {
            let why = "required for a VideoRoom event of a handle";
            Ok((
                event.session_id.ok_or_else(|| error("session_id", why))?,
                event.handle_id.ok_or_else(|| error("handle_id", why))?,
            ))
        };
        let opaque_id = event.opaque_id.as_deref();
        Ok(match videoroom {
            VideoRoomEvent::Joined { room, feed, display } => {
                let (session, handle) = ids()?;
                self.join_publisher(
                    session, handle, plugin, opaque_id, room, *feed, display, now, out,
                )?
            }
            VideoRoomEvent::Published { room, feed, display, streams } => {
                let (session, handle) = ids()?;
                let joined = self.join_publisher(
                    session, handle, plugin, opaque_id, room, *feed, display, now, out,
                )?;
                self.publish(&videoroom_key(room), session, *feed, streams, now, out)? || joined
            }
            VideoRoomEvent::Unpublished { room, feed } => {
                let key = videoroom_key(room);
                match self.state.rooms.get(&key).and_then(|room| room.feeds.get(feed)).copied() {
                    Some(session) => self.unpublish(&key, session, now, out),
                    None => false,
                }
            }
            VideoRoomEvent::Leaving { room, feed } => {
                let key = videoroom_key(room);
                match self.state.rooms.get(&key).and_then(|room| room.feeds.get(feed)).copied() {
                    Some(session) => self.leave(&key, session, now, out),
                    None => false,
                }
            }
            VideoRoomEvent::Subscribing { room, streams } => {
                let (session, handle) = ids()?;
                self.subscribe(session, handle, plugin, opaque_id, room, streams, now, out)?
            }
            VideoRoomEvent::Created { room } => {
                let key = videoroom_key(room);
                let created = self.ensure_room(&key, room, false, now, out)?;
                if created {
                    self.state.rooms.get_mut(&key).expect("just made").empty_since = Some(now);
                }
                created
            }
            VideoRoomEvent::Destroyed { room } => self.finish_room(&videoroom_key(room), now, out),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn join_publisher(
        &mut self,
        session: u64,
        handle: u64,
        plugin: &str,
        opaque_id: Option<&str>,
        room: &str,
        feed: u64,
        display: &Option<String>,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let key = videoroom_key(room);
        // Janus keeps a room's feed ids unique; a second session joining as a feed another one
        // holds would give both the same track sids (a track's sid names its feed, so that its
        // subscribers derive it too). Refused, before anything changes.
        let existing = self.state.rooms.get(&key);
        if let Some(&holder) = existing.and_then(|room| room.feeds.get(&feed))
            && holder != session
        {
            return Err(error(
                "event.data.id",
                format!("feed {feed} of room {room} is session {holder}'s already"),
            ));
        }
        // A participant is one session in a room, with one feed: its tracks are keyed by their
        // mids and their sids name the feed. A second feed of the same session in the room (a
        // second publisher handle) would mix two feeds' mids and leave the first feed's tracks
        // behind under sids another session could derive again: refused.
        if let Some(current) = existing
            .and_then(|room| room.participants.get(&session))
            .and_then(|participant| participant.feed)
            && current != feed
        {
            return Err(error(
                "event.data.id",
                format!(
                    "session {session} is feed {current} of room {room} already (one feed per session and room)"
                ),
            ));
        }
        let mut changed = self.ensure_handle(session, handle, plugin, opaque_id, now)?;
        changed |= self.ensure_room(&key, room, false, now, out)?;
        let identity = display
            .clone()
            .filter(|display| !display.is_empty())
            .unwrap_or_else(|| feed.to_string());
        changed |= self.ensure_participant(
            &key,
            session,
            &identity,
            display.as_deref().unwrap_or(""),
            now,
            out,
        );
        let room_state = self.state.rooms.get_mut(&key).expect("ensured");
        let participant = room_state.participants.get_mut(&session).expect("ensured");
        if participant.feed.is_none() || participant.publisher != Some(handle) {
            if let Some(old) = participant.feed.replace(feed) {
                room_state.feeds.remove(&old);
            }
            participant.publisher = Some(handle);
            participant.handles.insert(handle);
            room_state.feeds.insert(feed, session);
            changed = true;
        }
        let state = self.handle_mut(session, handle).expect("ensured");
        let role = Role::Publisher { room: key.clone() };
        if state.role != role {
            state.role = role;
            changed = true;
        }
        if state.up_at.is_some() {
            self.activate(&key, session, now, out);
        }
        if changed {
            self.dirty = true;
        }
        Ok(changed)
    }

    fn publish(
        &mut self,
        key: &str,
        session: u64,
        feed: u64,
        streams: &[PublishedStream],
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let max = self.config.limits.max_streams_per_handle;
        let room = self.state.rooms.get_mut(key).expect("joined first");
        let lk_room = lk_room(room);
        let participant = room.participants.get_mut(&session).expect("joined first");
        let mut changed = false;
        for stream in streams.iter().filter(|stream| stream.kind != MediaKind::Data) {
            if let Some(track) = participant.tracks.get_mut(&stream.mid) {
                // A codec named later fills the track's mime.
                if track.mime.is_empty() && stream.codec.is_some() {
                    track.mime = mime(stream.kind, stream.codec.as_deref());
                    changed = true;
                }
                continue;
            }
            if participant.tracks.len() >= max {
                self.counters.refused_streams += 1;
                return Err(error(
                    "event.data.streams",
                    format!("more than `janus.max_streams_per_handle` ({max}) tracks"),
                ));
            }
            let track = Track {
                sid: ids::track_sid(&lk_room.sid, feed, &stream.mid),
                kind: stream.kind,
                mime: mime(stream.kind, stream.codec.as_deref()),
            };
            out.push(
                now,
                Call::TrackPublished {
                    room: lk_room.clone(),
                    participant_id: participant.sid.clone(),
                    identity: participant.identity.clone(),
                    track: lk_track(&track, &stream.mid),
                    should_send_event: true,
                },
            );
            participant.tracks.insert(stream.mid.clone(), track);
            changed = true;
        }
        if changed {
            self.dirty = true;
        }
        Ok(changed)
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        session: u64,
        handle: u64,
        plugin: &str,
        opaque_id: Option<&str>,
        room: &str,
        streams: &[SubscribedStream],
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let mut changed = self.ensure_handle(session, handle, plugin, opaque_id, now)?;
        let key = videoroom_key(room);
        changed |= self.ensure_room(&key, room, false, now, out)?;
        // A session that only subscribes is known by its opaque id, else by the session.
        let opaque = self.handle(session, handle).and_then(|state| state.opaque_id.clone());
        let identity = opaque.unwrap_or_else(|| format!("session-{session}"));
        changed |= self.ensure_participant(&key, session, &identity, "", now, out);
        if let Some(participant) =
            self.state.rooms.get_mut(&key).and_then(|room| room.participants.get_mut(&session))
        {
            changed |= participant.handles.insert(handle);
        }
        let max = self.config.limits.max_streams_per_handle;
        let state = self.handle_mut(session, handle).expect("ensured");
        if !matches!(&state.role, Role::Subscriber { room, .. } if *room == key) {
            state.role = Role::Subscriber { room: key.clone(), streams: BTreeMap::new() };
            changed = true;
        }
        let Role::Subscriber { streams: known, .. } = &mut state.role else { unreachable!() };
        let mut refused = false;
        for stream in streams {
            let feed_stream = FeedStream {
                kind: stream.kind,
                feed: stream.feed,
                feed_mid: stream.feed_mid.clone(),
            };
            if known.get(&stream.mid) == Some(&feed_stream) {
                continue;
            }
            if !known.contains_key(&stream.mid) && known.len() >= max {
                refused = true;
                continue;
            }
            known.insert(stream.mid.clone(), feed_stream);
            changed = true;
        }
        let up = state.up_at.is_some();
        if up {
            self.activate(&key, session, now, out);
        }
        if changed {
            self.dirty = true;
        }
        if refused {
            self.counters.refused_streams += 1;
            return Err(error(
                "event.data.streams",
                format!("more than `janus.max_streams_per_handle` ({max}) streams"),
            ));
        }
        Ok(changed)
    }

    // === Stats ===

    /// Turns one medium's report into samples of the directions the handle's role measures.
    fn report(
        &mut self,
        session: u64,
        handle: u64,
        report: &MediaReport,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<bool, EventError> {
        let Some(state) = self.handle(session, handle) else { return Ok(false) };
        let up_at = state.up_at;
        // Whose samples: the handle's participant, or the one it had until it left.
        let target = match &state.role {
            Role::None => return Ok(false),
            Role::Left(left) => Target {
                room_sid: left.room_sid.clone(),
                room_name: left.room_name.clone(),
                participant_id: left.participant_sid.clone(),
                feed: left.feed,
                tracks: left.tracks.clone(),
                role: left.had.clone(),
                live_room: None,
            },
            role => {
                let key = role.room().expect("a role with a room");
                let Some(room) = self.state.rooms.get(key) else { return Ok(false) };
                let Some(participant) = room.participants.get(&session) else { return Ok(false) };
                Target {
                    room_sid: room.sid.clone(),
                    room_name: room.name.clone(),
                    participant_id: participant.sid.clone(),
                    feed: participant.feed,
                    tracks: participant.tracks.clone(),
                    role: role.clone(),
                    live_room: Some(key.to_owned()),
                }
            }
        };
        let kind = match report.kind {
            Some(kind) => kind,
            None => match target.tracks.get(&report.mid) {
                Some(track) => track.kind,
                None => return Ok(false),
            },
        };
        let directions: &[Direction] = match target.role {
            Role::Publisher { .. } => &[Direction::Upstream],
            Role::Subscriber { .. } => &[Direction::Downstream],
            Role::Own { .. } => &[Direction::Upstream, Direction::Downstream],
            Role::None | Role::Left(_) => &[],
        };
        let Target { room_sid, room_name, participant_id, .. } = &target;
        // Which track the samples are for.
        let (track_id, mime) = if kind == MediaKind::Data {
            (ids::data_track_sid(participant_id), String::new())
        } else {
            match (&target.role, target.tracks.get(&report.mid)) {
                (Role::Subscriber { streams, .. }, _) => match streams.get(&report.mid) {
                    Some(stream) => (
                        ids::track_sid(room_sid, stream.feed, &stream.feed_mid),
                        mime(kind, report.codec.as_deref()),
                    ),
                    None => return Ok(false),
                },
                (_, Some(track)) if !track.mime.is_empty() => {
                    (track.sid.clone(), track.mime.clone())
                }
                (_, Some(track)) => (track.sid.clone(), mime(kind, report.codec.as_deref())),
                (Role::Own { .. }, None) => {
                    let track = Track {
                        sid: ids::track_sid(room_sid, handle, &report.mid),
                        kind,
                        mime: mime(kind, report.codec.as_deref()),
                    };
                    // An own room's tracks are published as their first report shows them.
                    if let Some(key) = &target.live_room {
                        self.publish_own(key, session, &report.mid, track.clone(), now, out)?;
                    }
                    (track.sid, track.mime)
                }
                (_, None) => (
                    ids::track_sid(room_sid, target.feed.unwrap_or(handle), &report.mid),
                    mime(kind, report.codec.as_deref()),
                ),
            }
        };
        let max_keys = 2 * self.config.limits.max_streams_per_handle;
        let baselines = self.baselines.entry(handle).or_default();
        let zero_at = if self.fresh.contains(&handle) { up_at } else { None };
        let mut changed = false;
        for &direction in directions {
            let stream_key = (report.mid.clone(), report.substream, direction);
            if !baselines.contains_key(&stream_key) && baselines.len() >= max_keys {
                self.counters.refused_streams += 1;
                continue;
            }
            let (step, baseline) = stats::step(
                baselines.get(&stream_key).copied(),
                zero_at,
                Counts::of(report, direction, now),
            );
            baselines.insert(stream_key, baseline);
            match step {
                Step::Stale => {}
                Step::Baseline { reset } => {
                    self.counters.counter_resets += u64::from(reset);
                    changed = true;
                }
                Step::Sample { start, end, delta } => {
                    let key = if kind == MediaKind::Data {
                        StatsKey::for_data("", direction, participant_id.clone(), track_id.clone())
                    } else {
                        StatsKey::for_track(
                            "",
                            direction,
                            participant_id.clone(),
                            track_id.clone(),
                            track_source(kind),
                            track_type(kind),
                        )
                    };
                    let stat = sample(report, direction, start, end, &delta, &mime);
                    out.push(
                        now,
                        Call::TrackStats {
                            room_id: room_sid.clone(),
                            room_name: room_name.clone(),
                            key,
                            stat,
                        },
                    );
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// Publishes a track of an own room when its first report shows it.
    fn publish_own(
        &mut self,
        key: &str,
        session: u64,
        mid: &str,
        track: Track,
        now: Micros,
        out: &mut Out<'_>,
    ) -> Result<(), EventError> {
        let max = self.config.limits.max_streams_per_handle;
        let room = self.state.rooms.get_mut(key).expect("checked by the caller");
        let lk_room = lk_room(room);
        let participant = room.participants.get_mut(&session).expect("checked by the caller");
        if participant.tracks.len() >= max {
            self.counters.refused_streams += 1;
            return Err(error(
                "event.mid",
                format!("more than `janus.max_streams_per_handle` ({max}) tracks"),
            ));
        }
        out.push(
            now,
            Call::TrackPublished {
                room: lk_room,
                participant_id: participant.sid.clone(),
                identity: participant.identity.clone(),
                track: lk_track(&track, mid),
                should_send_event: true,
            },
        );
        participant.tracks.insert(mid.to_owned(), track);
        self.dirty = true;
        Ok(())
    }
}

/// Whose samples a handle's report gives.
struct Target {
    room_sid: String,
    room_name: String,
    participant_id: String,
    feed: Option<u64>,
    tracks: BTreeMap<String, Track>,
    /// The handle's role (for a handle whose participant left: the role it had).
    role: Role,
    /// The key of the participant's room while it is in it.
    live_room: Option<String>,
}

/// The key of a VideoRoom room.
fn videoroom_key(room: &str) -> String {
    format!("videoroom:{room}")
}

/// A codec as LiveKit spells its MIME type (`audio/opus`, `video/VP8`); empty when unknown.
pub fn mime(kind: MediaKind, codec: Option<&str>) -> String {
    let Some(codec) = codec.filter(|codec| !codec.is_empty()) else { return String::new() };
    let name = match codec.to_ascii_lowercase().as_str() {
        "opus" => "opus",
        "multiopus" => "multiopus",
        "red" => "red",
        "pcmu" => "PCMU",
        "pcma" => "PCMA",
        "g722" => "G722",
        "isac16" | "isac32" => "ISAC",
        "l16" => "L16",
        "vp8" => "VP8",
        "vp9" => "VP9",
        "h264" => "H264",
        "h265" => "H265",
        "av1" => "AV1",
        _ => codec,
    };
    format!("{}/{name}", kind.as_str())
}

fn track_type(kind: MediaKind) -> lk::TrackType {
    match kind {
        MediaKind::Audio => lk::TrackType::Audio,
        MediaKind::Video => lk::TrackType::Video,
        MediaKind::Data => lk::TrackType::Data,
    }
}

/// Janus does not say where a track comes from; a microphone and a camera are the usual case.
fn track_source(kind: MediaKind) -> lk::TrackSource {
    match kind {
        MediaKind::Audio => lk::TrackSource::Microphone,
        MediaKind::Video => lk::TrackSource::Camera,
        MediaKind::Data => lk::TrackSource::Unknown,
    }
}

fn lk_room(room: &Room) -> lk::Room {
    lk::Room {
        sid: room.sid.clone(),
        name: room.name.clone(),
        creation_time: i64::try_from(room.started / 1_000_000).unwrap_or(i64::MAX),
        creation_time_ms: i64::try_from(room.started / 1000).unwrap_or(i64::MAX),
        num_participants: u32::try_from(room.participants.len()).unwrap_or(u32::MAX),
        ..Default::default()
    }
}

fn lk_participant(
    participant: &Participant,
    state: lk::participant_info::State,
) -> lk::ParticipantInfo {
    lk::ParticipantInfo {
        sid: participant.sid.clone(),
        identity: participant.identity.clone(),
        name: participant.name.clone(),
        state: state as i32,
        joined_at: i64::try_from(participant.joined / 1_000_000).unwrap_or(i64::MAX),
        joined_at_ms: i64::try_from(participant.joined / 1000).unwrap_or(i64::MAX),
        is_publisher: participant.feed.is_some() || !participant.tracks.is_empty(),
        ..Default::default()
    }
}

fn lk_track(track: &Track, mid: &str) -> lk::TrackInfo {
    lk::TrackInfo {
        sid: track.sid.clone(),
        r#type: track_type(track.kind) as i32,
        name: track.kind.as_str().to_owned(),
        source: track_source(track.kind) as i32,
        mime_type: track.mime.clone(),
        mid: mid.to_owned(),
        ..Default::default()
    }
}

/// One sample of a stream: the counters' differences over `[start, end]`, with the report's
/// round-trip time, jitter and link quality.
fn sample(
    report: &MediaReport,
    direction: Direction,
    start: Micros,
    end: Micros,
    delta: &Counts,
    mime: &str,
) -> lk::AnalyticsStat {
    // The core's counters are 32-bit (packets) and read as signed: a larger value is invalid.
    let small = |value: u64| u32::try_from(value).unwrap_or(u32::MAX).min(i32::MAX as u32);
    let (jitter_ms, quality) = match direction {
        Direction::Upstream => (report.jitter_local, report.in_media_link_quality),
        Direction::Downstream => (report.jitter_remote, report.out_media_link_quality),
    };
    lk::AnalyticsStat {
        kind: direction.stream_type() as i32,
        time_stamp: Some(millis(end).to_timestamp()),
        mime: mime.to_owned(),
        // Janus's link quality (0 to 100; 0 before it knows) as a 0-to-5 score.
        score: if quality > 0 { (quality.min(100) as f32) / 20.0 } else { 0.0 },
        streams: vec![lk::AnalyticsStream {
            primary_packets: small(delta.packets),
            primary_bytes: delta.bytes,
            packets_lost: small(delta.lost),
            nacks: small(delta.nacks),
            rtt: small(report.rtt),
            // Janus reports milliseconds; LiveKit's streams carry microseconds.
            jitter: small(jitter_ms.saturating_mul(1000)),
            start_time: Some(millis(start).to_timestamp()),
            end_time: Some(millis(end).to_timestamp()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
