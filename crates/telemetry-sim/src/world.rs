//! The simulated SFU: rooms of participants who join, become active, publish, subscribe, mute,
//! resume and leave, on a schedule drawn from one seeded generator, so the same arguments always
//! give the same calls. Each kind of happening is one method; the stats reports are in [`stats`].

mod stats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use telemetry_core::UnixMillis;
use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

use crate::trouble::TroubleKind;
use crate::{CallKind, SimulateArgs};

/// The base57 alphabet of LiveKit's ids.
const ALPHABET: &[u8] = telemetry_core::ids::BASE57_ALPHABET;

/// The calls a step appends, each with what it contributes to a summary.
pub type Calls = Vec<(v1::TelemetryCall, CallKind)>;

#[derive(Clone, Debug)]
struct SimTrack {
    info: lk::TrackInfo,
    muted: bool,
}

#[derive(Clone, Debug)]
struct SimParticipant {
    info: lk::ParticipantInfo,
    /// Joined and active (media flowing).
    active: bool,
    left: bool,
    tracks: Vec<SimTrack>,
    /// Tracks of others this participant subscribes to: (publisher index, track index).
    subscriptions: Vec<(usize, usize)>,
    data_channel: bool,
    /// A bad network spell until this time.
    bad_until: UnixMillis,
}

#[derive(Clone, Debug)]
struct SimRoom {
    room: lk::Room,
    participants: Vec<SimParticipant>,
    ended: bool,
}

/// Scheduled happenings, ordered by time then insertion.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Happening {
    RoomStart(usize),
    Join(usize, usize),
    Active(usize, usize),
    Publish(usize, usize),
    Subscribe(usize, usize),
    Stats(usize, usize),
    ToggleMute(usize, usize),
    Resume(usize, usize),
    Leave(usize, usize),
    EgressStart(usize),
    EgressEnd(usize),
    RoomStates,
}

/// The simulated SFU: its rooms and participants, and a schedule of what happens next, ordered by
/// time then insertion. [`World::step`] takes the next happening and appends the calls it makes.
#[derive(Debug)]
pub struct World {
    rng: StdRng,
    rooms: Vec<SimRoom>,
    queue: BinaryHeap<Reverse<(UnixMillis, u64, Happening)>>,
    order: u64,
    node_id: String,
    stats_interval_ms: i64,
    end: UnixMillis,
    now: UnixMillis,
    egress: Option<lk::EgressInfo>,
    room_states_sequence: u64,
    /// The `--trouble`s, each aimed at one participant.
    troubles: Vec<AimedTrouble>,
}

/// A `--trouble` aimed at a participant, over a span of simulated time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AimedTrouble {
    /// What goes wrong.
    pub kind: TroubleKind,
    /// The room's index.
    pub room: usize,
    /// The participant's index in the room.
    pub participant: usize,
    /// The participant's sid.
    pub participant_sid: String,
    /// Samples starting at or after this time are troubled...
    pub from: UnixMillis,
    /// ...and before this one.
    pub until: UnixMillis,
}

/// What a trouble aimed at a participant guarantees of its start: it joins this soon after its
/// room starts, so the trouble is seen.
const AIMED_JOIN_WITHIN_MS: i64 = 3000;

impl World {
    /// Creates the world of a simulation whose simulated time starts at `start`: its rooms and
    /// participants, and the first happenings on the schedule.
    pub fn new(args: &SimulateArgs, start: UnixMillis) -> Self {
        let duration_ms = i64::try_from(args.duration.as_millis()).unwrap_or(i64::MAX);
        let mut world = Self {
            rng: StdRng::seed_from_u64(args.seed),
            rooms: Vec::new(),
            queue: BinaryHeap::new(),
            order: 0,
            node_id: args.node_id.clone(),
            stats_interval_ms: i64::try_from(args.stats_interval.as_millis()).unwrap_or(5000),
            end: start.plus_millis(duration_ms),
            now: start,
            egress: None,
            room_states_sequence: 0,
            troubles: Vec::new(),
        };
        for room_index in 0..args.rooms as usize {
            let sid = world.id("RM_");
            let room = lk::Room {
                sid,
                name: format!("room-{}-{room_index}", args.seed),
                empty_timeout: 300,
                max_participants: args.participants,
                ..Default::default()
            };
            let participants = (0..args.participants as usize)
                .map(|index| {
                    let sid = world.id("PA_");
                    SimParticipant {
                        info: lk::ParticipantInfo {
                            sid,
                            identity: format!("user-{room_index}-{index}"),
                            name: format!("User {room_index}.{index}"),
                            ..Default::default()
                        },
                        active: false,
                        left: false,
                        tracks: Vec::new(),
                        subscriptions: Vec::new(),
                        data_channel: false,
                        bad_until: UnixMillis(0),
                    }
                })
                .collect();
            world.rooms.push(SimRoom { room, participants, ended: false });
            let room_start =
                start.plus_millis(world.rng.random_range(0..=(duration_ms / 20).max(1)));
            world.schedule(room_start, Happening::RoomStart(room_index));
        }
        world.schedule(start.plus_millis(1000), Happening::RoomStates);
        world.aim_troubles(args, start);
        world
    }

    /// Aims each `--trouble` at its participant: the one it names, or one drawn from a generator
    /// of its own seeded from `--seed` (without `--trouble` the traffic is unchanged). A target
    /// that does not exist is skipped ([`SimulateArgs::check`] refuses it).
    fn aim_troubles(&mut self, args: &SimulateArgs, start: UnixMillis) {
        // "trouble" in ASCII: the generator of the draws differs from the world's.
        let mut draws = StdRng::seed_from_u64(args.seed ^ 0x0074_726f_7562_6c65);
        for trouble in &args.troubles {
            let (room, participant) = match trouble.target {
                Some((room, participant)) => (room as usize, participant as usize),
                None if args.rooms > 0 && args.participants > 0 => (
                    draws.random_range(0..args.rooms) as usize,
                    draws.random_range(0..args.participants) as usize,
                ),
                None => continue,
            };
            let Some(sim) = self.rooms.get(room).and_then(|r| r.participants.get(participant))
            else {
                continue;
            };
            let offset = |at: std::time::Duration| {
                start.plus_millis(i64::try_from(at.as_millis()).unwrap_or(i64::MAX))
            };
            self.troubles.push(AimedTrouble {
                kind: trouble.kind,
                room,
                participant,
                participant_sid: sim.info.sid.clone(),
                from: offset(trouble.from),
                until: offset(trouble.until),
            });
        }
    }

    /// The `--trouble`s and whom they are aimed at.
    pub fn troubles(&self) -> &[AimedTrouble] {
        &self.troubles
    }

    /// Whether a trouble is aimed at this participant.
    fn aimed_at(&self, room: usize, participant: usize) -> bool {
        self.troubles.iter().any(|t| t.room == room && t.participant == participant)
    }

    fn id(&mut self, prefix: &str) -> String {
        let mut id = String::from(prefix);
        while id.len() < prefix.len() + 12 {
            let value = (self.rng.next_u32() & 0x3f) as usize;
            if value < ALPHABET.len() {
                id.push(char::from(ALPHABET[value]));
            }
        }
        id
    }

    fn schedule(&mut self, at: UnixMillis, happening: Happening) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, happening)));
    }

    /// A random time in `range` milliseconds after `at`.
    fn later(&mut self, at: UnixMillis, range: std::ops::Range<i64>) -> UnixMillis {
        at.plus_millis(self.rng.random_range(range))
    }

    /// Returns the time of the next happening, if any.
    pub fn next_time(&self) -> Option<UnixMillis> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    fn call(&self, member: Member) -> v1::TelemetryCall {
        v1::TelemetryCall {
            at: Some(self.now.to_timestamp()),
            node_id: self.node_id.clone(),
            call: Some(member),
        }
    }

    /// Takes the next happening off the schedule and appends the calls it makes to `out`.
    pub fn step(&mut self, out: &mut Calls) {
        let Some(Reverse((at, _, happening))) = self.queue.pop() else { return };
        self.now = at;
        let remaining = self.end.millis_since(at).max(1);
        match happening {
            Happening::RoomStart(room) => self.start_room(room, at, remaining, out),
            Happening::Join(room, participant) => self.join(room, participant, at, out),
            Happening::Active(room, participant) => {
                self.activate(room, participant, at, remaining, out)
            }
            Happening::Publish(room, participant) => self.publish(room, participant, at, out),
            Happening::Subscribe(room, participant) => self.subscribe(room, participant, out),
            Happening::ToggleMute(room, participant) => {
                self.toggle_mute(room, participant, at, out)
            }
            Happening::Resume(room, participant) => self.resume(room, participant, at, out),
            Happening::Stats(room, participant) => self.stats(room, participant, out),
            Happening::Leave(room, participant) => self.leave(room, participant, out),
            Happening::EgressStart(room) => self.start_egress(room, at, remaining, out),
            Happening::EgressEnd(_) => self.end_egress(at, out),
            Happening::RoomStates => self.report_room_states(at, out),
        }
    }

    /// A room starts: its participants are scheduled to join within the first quarter of the time
    /// left, and the first room records an egress.
    fn start_room(&mut self, room: usize, at: UnixMillis, remaining: i64, out: &mut Calls) {
        self.rooms[room].room.creation_time = at.as_secs();
        self.rooms[room].room.creation_time_ms = at.0;
        out.push((
            self.call(Member::RoomStarted(v1::RoomCall {
                room: Some(self.rooms[room].room.clone()),
            })),
            CallKind::Event,
        ));
        for participant in 0..self.rooms[room].participants.len() {
            let mut join = at.plus_millis(self.rng.random_range(0..=(remaining / 4).max(1)));
            if self.aimed_at(room, participant) {
                join = join.min(at.plus_millis(AIMED_JOIN_WITHIN_MS));
            }
            self.schedule(join, Happening::Join(room, participant));
        }
        if room == 0 {
            let started = at.plus_millis((remaining / 10).max(1));
            self.schedule(started, Happening::EgressStart(room));
        }
    }

    /// A participant joins; one join in ten never gets media (an aborted connection), the others
    /// become active.
    fn join(&mut self, room: usize, participant: usize, at: UnixMillis, out: &mut Calls) {
        let mut info = self.rooms[room].participants[participant].info.clone();
        info.state = lk::participant_info::State::Joined as i32;
        info.joined_at = at.as_secs();
        info.joined_at_ms = at.0;
        self.rooms[room].participants[participant].info = info.clone();
        out.push((
            self.call(Member::ParticipantJoined(v1::ParticipantJoinedCall {
                room: Some(self.room_snapshot(room)),
                participant: Some(info),
                client_info: Some(lk::ClientInfo {
                    sdk: [
                        lk::client_info::Sdk::Js,
                        lk::client_info::Sdk::Swift,
                        lk::client_info::Sdk::Android,
                    ][participant % 3] as i32,
                    version: "2.5.0".to_owned(),
                    os: ["macOS", "iOS", "Android"][participant % 3].to_owned(),
                    browser: "Chrome".to_owned(),
                    ..Default::default()
                }),
                client_meta: Some(lk::AnalyticsClientMeta {
                    region: "eu-west".to_owned(),
                    node: self.node_id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            CallKind::Event,
        ));
        // One join in ten never gets media: the connection is aborted (never one a trouble is
        // aimed at).
        if self.rng.random_range(0..10) == 0 && !self.aimed_at(room, participant) {
            let leave = at.plus_millis(self.rng.random_range(2000..15000));
            self.schedule(leave, Happening::Leave(room, participant));
        } else {
            let active = at.plus_millis(self.rng.random_range(300..2500));
            self.schedule(active, Happening::Active(room, participant));
        }
    }

    /// A participant becomes active: it publishes soon, reports stats every interval, leaves some
    /// time in the second half of the time left, and one in four resumes once.
    fn activate(
        &mut self,
        room: usize,
        participant: usize,
        at: UnixMillis,
        remaining: i64,
        out: &mut Calls,
    ) {
        if self.rooms[room].participants[participant].left {
            return;
        }
        let sim = &mut self.rooms[room].participants[participant];
        sim.active = true;
        sim.info.state = lk::participant_info::State::Active as i32;
        let info = sim.info.clone();
        let connect_ms = self.rng.random_range(150..1500);
        let connection = ["udp", "udp", "udp", "tcp", "turn"][self.rng.random_range(0..5)];
        out.push((
            self.call(Member::ParticipantActive(v1::ParticipantActiveCall {
                room: Some(self.room_snapshot(room)),
                participant: Some(info),
                client_meta: Some(lk::AnalyticsClientMeta {
                    client_connect_time: connect_ms,
                    connection_type: connection.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            CallKind::Event,
        ));
        {
            let when = self.later(at, 200..1500);
            self.schedule(when, Happening::Publish(room, participant));
        }
        self.schedule(at.plus_millis(self.stats_interval_ms), Happening::Stats(room, participant));
        let leave_at =
            at.plus_millis(self.rng.random_range((remaining / 2).max(1)..=remaining.max(2)));
        if leave_at < self.end {
            self.schedule(leave_at, Happening::Leave(room, participant));
        }
        if self.rng.random_range(0..4) == 0 {
            let resume = at.plus_millis(self.rng.random_range(5000..(remaining / 2).max(5001)));
            self.schedule(resume, Happening::Resume(room, participant));
        }
    }

    /// A participant publishes audio and simulcast video (and one in three a data channel); the
    /// others subscribe to them, and one in three publishers toggles its mute later.
    fn publish(&mut self, room: usize, participant: usize, at: UnixMillis, out: &mut Calls) {
        if self.rooms[room].participants[participant].left {
            return;
        }
        let pid = self.rooms[room].participants[participant].info.sid.clone();
        let identity = self.rooms[room].participants[participant].info.identity.clone();
        let audio = lk::TrackInfo {
            sid: self.id("TR_"),
            r#type: lk::TrackType::Audio as i32,
            source: lk::TrackSource::Microphone as i32,
            name: "microphone".to_owned(),
            mime_type: "audio/opus".to_owned(),
            ..Default::default()
        };
        let video = lk::TrackInfo {
            sid: self.id("TR_"),
            r#type: lk::TrackType::Video as i32,
            source: lk::TrackSource::Camera as i32,
            name: "camera".to_owned(),
            mime_type: "video/VP8".to_owned(),
            width: 1280,
            height: 720,
            ..Default::default()
        };
        let data = self.rng.random_range(0..3) == 0;
        for track in [audio, video] {
            for member in [
                Member::TrackPublishRequested(v1::TrackPublishCall {
                    room: Some(self.minimal_room(room)),
                    participant_id: pid.clone(),
                    identity: identity.clone(),
                    track: Some(track.clone()),
                    ..Default::default()
                }),
                Member::TrackPublished(v1::TrackPublishCall {
                    room: Some(self.minimal_room(room)),
                    participant_id: pid.clone(),
                    identity: identity.clone(),
                    track: Some(track.clone()),
                    ..Default::default()
                }),
            ] {
                out.push((self.call(member), CallKind::Event));
            }
            self.rooms[room].participants[participant]
                .tracks
                .push(SimTrack { info: track, muted: false });
        }
        self.rooms[room].participants[participant].data_channel = data;
        // Others subscribe to the new tracks a moment later.
        for other in 0..self.rooms[room].participants.len() {
            if other != participant
                && self.rooms[room].participants[other].active
                && !self.rooms[room].participants[other].left
            {
                {
                    let when = self.later(at, 100..800);
                    self.schedule(when, Happening::Subscribe(room, other));
                }
            }
        }
        {
            let when = self.later(at, 100..800);
            self.schedule(when, Happening::Subscribe(room, participant));
        }
        if self.rng.random_range(0..3) == 0 {
            {
                let when = self.later(at, 10_000..60_000);
                self.schedule(when, Happening::ToggleMute(room, participant));
            }
        }
    }

    /// A participant subscribes to every published track it does not have yet.
    fn subscribe(&mut self, room: usize, participant: usize, out: &mut Calls) {
        if self.rooms[room].participants[participant].left
            || !self.rooms[room].participants[participant].active
        {
            return;
        }
        let subscriber = self.rooms[room].participants[participant].info.sid.clone();
        for publisher in 0..self.rooms[room].participants.len() {
            if publisher == participant || self.rooms[room].participants[publisher].left {
                continue;
            }
            for track in 0..self.rooms[room].participants[publisher].tracks.len() {
                if self.rooms[room].participants[participant]
                    .subscriptions
                    .contains(&(publisher, track))
                {
                    continue;
                }
                let info = self.rooms[room].participants[publisher].tracks[track].info.clone();
                let publisher_info = lk::ParticipantInfo {
                    sid: self.rooms[room].participants[publisher].info.sid.clone(),
                    identity: self.rooms[room].participants[publisher].info.identity.clone(),
                    ..Default::default()
                };
                out.push((
                    self.call(Member::TrackSubscribeRequested(v1::TrackCall {
                        room: Some(self.minimal_room(room)),
                        participant_id: subscriber.clone(),
                        track: Some(info.clone()),
                    })),
                    CallKind::Event,
                ));
                out.push((
                    self.call(Member::TrackSubscribed(v1::TrackSubscribedCall {
                        room: Some(self.minimal_room(room)),
                        participant_id: subscriber.clone(),
                        track: Some(info),
                        publisher: Some(publisher_info),
                        should_send_event: None,
                    })),
                    CallKind::Event,
                ));
                self.rooms[room].participants[participant].subscriptions.push((publisher, track));
            }
        }
    }

    /// A participant's first track is muted or unmuted, and toggled again later.
    fn toggle_mute(&mut self, room: usize, participant: usize, at: UnixMillis, out: &mut Calls) {
        let sim = &self.rooms[room].participants[participant];
        if sim.left || sim.tracks.is_empty() {
            return;
        }
        let pid = sim.info.sid.clone();
        let muted = !sim.tracks[0].muted;
        self.rooms[room].participants[participant].tracks[0].muted = muted;
        let mut track = self.rooms[room].participants[participant].tracks[0].info.clone();
        track.muted = muted;
        let call = v1::TrackCall {
            room: Some(self.minimal_room(room)),
            participant_id: pid,
            track: Some(track),
        };
        let member = if muted { Member::TrackMuted(call) } else { Member::TrackUnmuted(call) };
        out.push((self.call(member), CallKind::Event));
        {
            let when = self.later(at, 5_000..40_000);
            self.schedule(when, Happening::ToggleMute(room, participant));
        }
    }

    /// A participant resumes after a network change, with a bad network spell of 10 s.
    fn resume(&mut self, room: usize, participant: usize, at: UnixMillis, out: &mut Calls) {
        if self.rooms[room].participants[participant].left {
            return;
        }
        let info = self.rooms[room].participants[participant].info.clone();
        out.push((
            self.call(Member::ParticipantResumed(v1::ParticipantResumedCall {
                room: Some(self.room_snapshot(room)),
                participant: Some(info),
                node_id: self.node_id.clone(),
                reason: lk::ReconnectReason::RrSubscriberFailed as i32,
                guard: String::new(),
            })),
            CallKind::Event,
        ));
        self.rooms[room].participants[participant].bad_until = at.plus_millis(10_000);
    }

    /// The room records an egress for half of the time left.
    fn start_egress(&mut self, room: usize, at: UnixMillis, remaining: i64, out: &mut Calls) {
        let info = lk::EgressInfo {
            egress_id: self.id("EG_"),
            room_id: self.rooms[room].room.sid.clone(),
            room_name: self.rooms[room].room.name.clone(),
            status: lk::EgressStatus::EgressActive as i32,
            started_at: at.0 * 1_000_000,
            ..Default::default()
        };
        out.push((
            self.call(Member::EgressStarted(v1::EgressCall { info: Some(info.clone()) })),
            CallKind::Event,
        ));
        self.egress = Some(info);
        let end = at.plus_millis((remaining / 2).max(1));
        self.schedule(end, Happening::EgressEnd(room));
    }

    /// The egress ends.
    fn end_egress(&mut self, at: UnixMillis, out: &mut Calls) {
        if let Some(mut info) = self.egress.take() {
            info.status = lk::EgressStatus::EgressComplete as i32;
            info.ended_at = at.0 * 1_000_000;
            out.push((
                self.call(Member::EgressEnded(v1::EgressCall { info: Some(info) })),
                CallKind::Event,
            ));
        }
    }

    /// The node reports its room states, every 30 s.
    fn report_room_states(&mut self, at: UnixMillis, out: &mut Calls) {
        self.room_states_sequence += 1;
        let rooms = self
            .rooms
            .iter()
            .filter(|room| room.room.creation_time > 0 && !room.ended)
            .map(|room| lk::AnalyticsRoom {
                id: room.room.sid.clone(),
                name: room.room.name.clone(),
                created_at: Some(UnixMillis::from_secs(room.room.creation_time).to_timestamp()),
                participants: room
                    .participants
                    .iter()
                    .filter(|p| p.active && !p.left)
                    .map(|p| lk::AnalyticsRoomParticipant {
                        id: p.info.sid.clone(),
                        identity: p.info.identity.clone(),
                        name: p.info.name.clone(),
                        state: lk::participant_info::State::Active as i32,
                        joined_at: Some(UnixMillis::from_secs(p.info.joined_at).to_timestamp()),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        let node_rooms =
            lk::AnalyticsNodeRooms { node_id: self.node_id.clone(), rooms, ..Default::default() };
        out.push((
            self.call(Member::LocalRoomState(v1::LocalRoomStateCall {
                node_rooms: Some(node_rooms),
            })),
            CallKind::Other,
        ));
        self.schedule(at.plus_millis(30_000), Happening::RoomStates);
    }

    fn room_snapshot(&self, room: usize) -> lk::Room {
        let mut snapshot = self.rooms[room].room.clone();
        snapshot.num_participants = self.rooms[room]
            .participants
            .iter()
            .filter(|p| p.info.joined_at > 0 && !p.left)
            .count() as u32;
        snapshot.num_publishers = self.rooms[room]
            .participants
            .iter()
            .filter(|p| !p.tracks.is_empty() && !p.left)
            .count() as u32;
        snapshot
    }

    fn minimal_room(&self, room: usize) -> lk::Room {
        lk::Room {
            sid: self.rooms[room].room.sid.clone(),
            name: self.rooms[room].room.name.clone(),
            ..Default::default()
        }
    }

    fn leave(&mut self, room: usize, participant: usize, out: &mut Calls) {
        if self.rooms[room].participants[participant].left {
            return;
        }
        let pid = self.rooms[room].participants[participant].info.sid.clone();
        let identity = self.rooms[room].participants[participant].info.identity.clone();
        let tracks = std::mem::take(&mut self.rooms[room].participants[participant].tracks);
        for track in tracks {
            out.push((
                self.call(Member::TrackUnpublished(v1::TrackPublishCall {
                    room: Some(self.minimal_room(room)),
                    participant_id: pid.clone(),
                    identity: identity.clone(),
                    track: Some(track.info),
                    ..Default::default()
                })),
                CallKind::Event,
            ));
        }
        self.rooms[room].participants[participant].left = true;
        let mut info = self.rooms[room].participants[participant].info.clone();
        info.state = lk::participant_info::State::Disconnected as i32;
        info.disconnect_reason = lk::DisconnectReason::ClientInitiated as i32;
        out.push((
            self.call(Member::ParticipantLeft(v1::ParticipantLeftCall {
                room: Some(self.room_snapshot(room)),
                participant: Some(info),
                should_send_event: None,
                guard: String::new(),
            })),
            CallKind::Event,
        ));
    }

    /// Everyone leaves, every room ends, at `at`.
    pub fn finish(&mut self, at: UnixMillis, out: &mut Calls) {
        self.now = at;
        for room in 0..self.rooms.len() {
            if self.rooms[room].room.creation_time == 0 || self.rooms[room].ended {
                continue;
            }
            for participant in 0..self.rooms[room].participants.len() {
                if self.rooms[room].participants[participant].info.joined_at > 0 {
                    self.leave(room, participant, out);
                }
            }
            if let Some(mut info) = self.egress.take() {
                info.status = lk::EgressStatus::EgressComplete as i32;
                out.push((
                    self.call(Member::EgressEnded(v1::EgressCall { info: Some(info) })),
                    CallKind::Event,
                ));
            }
            self.rooms[room].ended = true;
            out.push((
                self.call(Member::RoomEnded(v1::RoomCall { room: Some(self.room_snapshot(room)) })),
                CallKind::Event,
            ));
        }
    }
}
