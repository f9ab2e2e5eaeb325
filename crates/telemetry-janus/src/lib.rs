//! The Janus adapter of rtc-telemetry: pure logic, no IO, no async runtime (like
//! `telemetry-core`, checked by `cargo xtask tidy`). It turns the events Janus's stock sample
//! event handler sends (`reference/janus-events.md`) into `TelemetryService` calls
//! ([`telemetry_core::Call`]), so that a Janus deployment gets rooms, participants, tracks, honest
//! stats and LiveKit's webhooks with nothing but its own configuration changed. The service's
//! `POST /v1/ingest/janus` decodes requests with [`event::decode`] and hands the events to
//! [`Adapters`]; the fuzz targets drive the same types.
//!
//! # The mapping (DESIGN.md, "Janus ingest")
//!
//! - **Node**: the event's `emitter` (Janus's `server_name`). State is kept per emitter
//!   ([`Adapter`]).
//! - **Sessions and handles**: a Janus session is a participant's connection; the handles of one
//!   session in one room are one participant. Sessions and handles are known from `created` and
//!   `attached`, or from the first plugin event that names them. A session ends at `destroyed`
//!   or `timeout`, or after `session_idle_timeout` without an event (at its last event), or when
//!   the Janus server announces `started` or `shutdown` (everything it had ends).
//! - **VideoRoom**: one room per VideoRoom room, named by the room id as text (`"1234"`),
//!   started at its first participant or at its `created` event, finished when its last
//!   participant has been gone for `room_idle_timeout` (at the moment it ran out, by the
//!   server's events or [`Adapter::tick`]) or at `destroyed`. A participant per session in the
//!   room: joined at `joined` (or `published`, or a subscriber's `subscribing`), identity its
//!   `display`, else its feed id (a session that only subscribes: its opaque id, else
//!   `session-<id>`); active at the `webrtcup` of any of its handles; left at `leaving` (found by
//!   room and feed id, since `leaving` and `unpublished` carry no session), at the hang-up or
//!   `detached` of its publishing handle, when its last handle is detached, or when its session
//!   ends. A participant whose PeerConnection never came up leaves as aborted (the core's
//!   `participant_connection_aborted`). Its published audio and video streams are tracks (type,
//!   mid, codec as a MIME type such as `video/VP8`), published at `published`, unpublished at
//!   `unpublished` or when it leaves.
//! - **EchoTest**: one room per handle, named `echotest-<handle id>`, started at `attached`
//!   with its one participant (identity the handle's opaque id, else `session-<id>`), active at
//!   `webrtcup`, left (and the room finished) at hang-up or `detached`; a later PeerConnection
//!   of the same handle starts a new room. Its tracks are published as their first statistics
//!   show them (mid, medium, codec); both directions are measured on the one handle.
//! - **Every other plugin** (Streaming, AudioBridge, SIP, NoSIP, VideoCall, TextRoom,
//!   Record&Play, Lua, Duktape, third-party ones) is mapped as EchoTest is: a room per handle
//!   named `<plugin>-<handle id>` (`streaming-42`, `audiobridge-42`), its one participant, its
//!   tracks and both directions of its PeerConnection's statistics. Their plugin events are
//!   ignored: an AudioBridge room's participants therefore appear as separate one-participant
//!   rooms (their traffic to and from the mixer), not as one room.
//! - **Stats**: each media statistics report gives, per direction the handle measures, one
//!   `TrackStats` sample: the difference from the previous report of the same handle, mid and
//!   direction, covering the time between their `timestamp`s ([`stats`] has the rules: the
//!   first report of a PeerConnection counts from its `webrtcup`, counters that go back start a
//!   new baseline, never a negative sample). Received on a publisher's handle is upstream (for
//!   the publisher's track), sent on a subscriber's handle is downstream (for the subscriber,
//!   on the publisher's track its stream comes from); an EchoTest handle measures both. A sample
//!   carries bytes, packets, packets lost, NACKs, RTT, jitter (in microseconds) and Janus's link
//!   quality as a 0-to-5 score. Data channels are a data pseudo track per participant. Janus
//!   reports each simulcast layer of a stream on its own (`substream`): each layer is a counter
//!   series of its own, and their samples add up on the stream's track (not yet checked against
//!   a real simulcast publisher). Janus's
//!   `*-lastsec` values are not used: the core's sample has no field for a peak, and its peak
//!   rate comes from the samples' own intervals (one `stats_period` each).
//! - **Ignored** (counted, no effect): transport (128), external (4) and JSEP (8) events, local
//!   and remote candidates, selected pairs, DTLS states, media on/off and slow-link events, an
//!   ICE state already seen for the PeerConnection (Janus repeats `connected`/`ready` all call
//!   long), plugin events of other plugins and VideoRoom events that say nothing about
//!   participants (`configured`, `talking`, ...), events of sessions or handles not known, and
//!   repeats of what is already known.
//!
//! # State
//!
//! Bounded ([`AdapterLimits`]: servers, sessions per server, handles per session, rooms per
//! server, streams per handle; a refusal rejects the event, naming the cap, and is counted in
//! [`Counters`]) and persisted: after an event changed it, [`Adapter::take_snapshot`] gives it as
//! JSON, which the service writes to the store and gives back to [`Adapter::restore`] after a
//! restart, so a call in progress keeps its room, participant and tracks. Counter baselines are
//! not persisted: the first report after a restart is a baseline, so at most one stats period is
//! lost.

pub mod adapter;
pub mod adapters;
pub mod config;
pub mod event;
pub mod ids;
mod state;
pub mod stats;

pub use adapter::{Adapter, Applied, Counters, Emitted, RestoreError, Snapshot, VIDEOROOM};
pub use adapters::Adapters;
pub use config::{AdapterConfig, AdapterLimits};
pub use event::{Event, EventError, Micros, decode};
pub use state::STATE_VERSION;
