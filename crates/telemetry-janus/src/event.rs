//! Janus events as the adapter reads them, decoded from JSON values with every problem reported
//! under the name of the field at fault.
//!
//! Janus's event handlers send one JSON object per event (`emitter`, `type`, `subtype`,
//! `timestamp` in microseconds, `session_id`, `handle_id`, `opaque_id`, `event`; see
//! `reference/janus-events.md`). Session and handle ids are 64-bit numbers: they are read as
//! `u64` from the decoded JSON number, never through a float, so no precision is lost.
//!
//! Only what the mapping needs is decoded; the rest of an event is checked for its shape (an
//! object where an object must be) and otherwise left alone. An unknown `type`, or an unknown
//! `subtype` of a known one, is an error: Janus 1.x sends none, and a sender that does is not the
//! stock event handler.

use serde_json::{Map, Value};

/// Microseconds since the Unix epoch: Janus's `timestamp`.
pub type Micros = u64;

/// Why an event cannot be read: the field at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EventError {
    /// The field's path in the event (`event.data.streams[1].mid`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

pub(crate) fn error(field: impl Into<String>, problem: impl Into<String>) -> EventError {
    EventError { field: field.into(), problem: problem.into() }
}

/// One Janus event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The Janus server that sent it (its `server_name`): the node.
    pub emitter: String,
    /// When Janus made it.
    pub timestamp: Micros,
    /// The Janus session, for session-bound events.
    pub session_id: Option<u64>,
    /// The plugin handle, for handle-bound events.
    pub handle_id: Option<u64>,
    /// The application's opaque id of the handle, if any.
    pub opaque_id: Option<String>,
    /// What happened.
    pub body: Body,
}

/// What an event says, as far as the mapping cares.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// Type 1, `created`: a Janus session was created.
    SessionCreated,
    /// Type 1, `destroyed` or `timeout`: a Janus session is gone.
    SessionDestroyed,
    /// Type 2, `attached`: a plugin handle was attached to a session.
    Attached {
        /// The plugin's package name (`janus.plugin.videoroom`).
        plugin: String,
    },
    /// Type 2, `detached`: a plugin handle is gone.
    Detached,
    /// Type 16 subtype 1: the ICE state of a handle's PeerConnection.
    IceState(String),
    /// Type 16 subtype 6, `webrtcup`: the PeerConnection is up.
    WebrtcUp,
    /// Type 16 subtype 6, `hangup`: the PeerConnection is gone.
    Hangup {
        /// Why, as Janus says it.
        reason: String,
    },
    /// Type 32 subtype 3: media statistics, one report per medium (one, or several when Janus
    /// combines them).
    MediaStats(Vec<MediaReport>),
    /// Type 64: a plugin event.
    Plugin {
        /// The plugin's package name.
        plugin: String,
        /// What it says, for the plugins the mapping knows.
        data: PluginData,
    },
    /// Type 256 subtype 1: the Janus server started.
    CoreStarted,
    /// Type 256 subtype 2: the Janus server is shutting down.
    CoreShutdown,
    /// Anything that carries nothing for telemetry: transport requests, JSEP, candidates, DTLS
    /// states, media on/off and slow links, external events, other session and handle events.
    Other,
}

/// The plugin-specific part of a type-64 event.
#[derive(Clone, Debug, PartialEq)]
pub enum PluginData {
    /// An event of the VideoRoom plugin the mapping uses.
    VideoRoom(VideoRoomEvent),
    /// Another plugin's event, or a VideoRoom event the mapping does not use.
    Other,
}

/// The VideoRoom plugin's events (`event.data.event`) the mapping uses. Rooms are named by their
/// id as text, whether numeric or a string (`string_ids`).
#[derive(Clone, Debug, PartialEq)]
pub enum VideoRoomEvent {
    /// `joined`: a publisher joined a room.
    Joined {
        /// The room.
        room: String,
        /// The publisher's feed id.
        feed: u64,
        /// Its display name, if it gave one.
        display: Option<String>,
    },
    /// `published`: a publisher's streams.
    Published {
        /// The room.
        room: String,
        /// The publisher's feed id.
        feed: u64,
        /// Its display name, if it gave one.
        display: Option<String>,
        /// The streams, disabled ones left out.
        streams: Vec<PublishedStream>,
    },
    /// `unpublished`: a feed stopped publishing (carries no session or handle).
    Unpublished {
        /// The room.
        room: String,
        /// The feed.
        feed: u64,
    },
    /// `leaving`: a feed left its room (carries no session or handle).
    Leaving {
        /// The room.
        room: String,
        /// The feed.
        feed: u64,
    },
    /// `subscribing` or `updated`: a subscriber handle's streams, each from a feed.
    Subscribing {
        /// The room.
        room: String,
        /// The streams.
        streams: Vec<SubscribedStream>,
    },
    /// `created`: a room was created.
    Created {
        /// The room.
        room: String,
    },
    /// `destroyed`: a room was destroyed.
    Destroyed {
        /// The room.
        room: String,
    },
}

/// What a stream carries.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
    /// A data channel.
    Data,
}

impl MediaKind {
    fn parse(field: &str, text: &str) -> Result<Self, EventError> {
        match text {
            "audio" => Ok(MediaKind::Audio),
            "video" => Ok(MediaKind::Video),
            "data" => Ok(MediaKind::Data),
            other => Err(error(field, format!("`{other}` is not `audio`, `video` or `data`"))),
        }
    }

    /// Returns Janus's name: `audio`, `video` or `data`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Data => "data",
        }
    }
}

/// A stream of a VideoRoom publisher.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedStream {
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Its mid in the publisher's PeerConnection.
    pub mid: String,
    /// Its codec (`opus`, `vp8`), if Janus names one.
    pub codec: Option<String>,
}

/// A stream of a VideoRoom subscriber handle, from one feed.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscribedStream {
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Its mid in the subscriber's PeerConnection.
    pub mid: String,
    /// The feed it comes from.
    pub feed: u64,
    /// The stream's mid in the feed's PeerConnection.
    pub feed_mid: String,
}

/// One medium's statistics in a type-32 subtype-3 event: counters since the PeerConnection
/// started, and instantaneous values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaReport {
    /// The stream's mid.
    pub mid: String,
    /// Audio, video or data.
    pub kind: Option<MediaKind>,
    /// Its codec, if any.
    pub codec: Option<String>,
    /// The simulcast layer the counters are of (Janus sends one report per layer; `substream`,
    /// 0 when absent).
    pub substream: u64,
    /// Round-trip time, in milliseconds.
    pub rtt: u64,
    /// Packets lost on the way in (Janus's `lost`).
    pub lost: u64,
    /// Packets lost on the way out, as the remote reports (`lost-by-remote`).
    pub lost_by_remote: u64,
    /// Jitter of what Janus receives, in milliseconds.
    pub jitter_local: u64,
    /// Jitter the remote reports of what Janus sends, in milliseconds.
    pub jitter_remote: u64,
    /// Janus's quality of the incoming media, 0 to 100 (0: not known yet).
    pub in_media_link_quality: u64,
    /// Janus's quality of the outgoing media, 0 to 100 (0: not known yet).
    pub out_media_link_quality: u64,
    /// Packets received by Janus.
    pub packets_received: u64,
    /// Packets sent by Janus.
    pub packets_sent: u64,
    /// Bytes received by Janus.
    pub bytes_received: u64,
    /// Bytes sent by Janus.
    pub bytes_sent: u64,
    /// NACKs Janus received (for what it sends).
    pub nacks_received: u64,
    /// NACKs Janus sent (for what it receives).
    pub nacks_sent: u64,
}

/// Event types (Janus's `type`, a bit of the handler's `events` mask).
const KNOWN_TYPES: &str = "1 (session), 2 (handle), 4 (external), 8 (jsep), 16 (webrtc), 32 (media), 64 (plugin), 128 (transport), 256 (core)";

/// Decodes one event.
///
/// # Errors
///
/// The first problem found, naming the field.
pub fn decode(value: &Value) -> Result<Event, EventError> {
    let object = value.as_object().ok_or_else(|| {
        error("(event)", format!("expected a JSON object, found {}", describe(value)))
    })?;
    let emitter = required_str(object, "", "emitter")?;
    if emitter.is_empty() {
        return Err(error("emitter", "empty: Janus sends its `server_name` here"));
    }
    let timestamp = required_u64(object, "", "timestamp")?;
    let event_type = required_u64(object, "", "type")?;
    let subtype = optional_u64(object, "", "subtype")?;
    let session_id = optional_u64(object, "", "session_id")?;
    let handle_id = optional_u64(object, "", "handle_id")?;
    let opaque_id = optional_str(object, "", "opaque_id")?.map(str::to_owned);
    let event = object.get("event");
    let body = match event_type {
        1 => session(required_object(event, "event")?)?,
        2 => handle(required_object(event, "event")?)?,
        4 | 8 | 128 => Body::Other,
        16 => webrtc(subtype, event)?,
        32 => media(subtype, event)?,
        64 => plugin(required_object(event, "event")?)?,
        256 => match required_subtype(subtype, 256, &[1, 2])? {
            1 => Body::CoreStarted,
            _ => Body::CoreShutdown,
        },
        other => {
            return Err(error("type", format!("unknown event type {other}; known: {KNOWN_TYPES}")));
        }
    };
    let needs_handle = matches!(
        body,
        Body::Attached { .. }
            | Body::Detached
            | Body::IceState(_)
            | Body::WebrtcUp
            | Body::Hangup { .. }
            | Body::MediaStats(_)
    );
    if needs_handle {
        if session_id.is_none() {
            return Err(error("session_id", "required for a handle's event"));
        }
        if handle_id.is_none() {
            return Err(error("handle_id", "required for a handle's event"));
        }
    }
    if matches!(body, Body::SessionCreated | Body::SessionDestroyed) && session_id.is_none() {
        return Err(error("session_id", "required for a session event"));
    }
    Ok(Event { emitter: emitter.to_owned(), timestamp, session_id, handle_id, opaque_id, body })
}

fn session(event: &Map<String, Value>) -> Result<Body, EventError> {
    Ok(match required_str(event, "event", "name")? {
        "created" => Body::SessionCreated,
        "destroyed" | "timeout" => Body::SessionDestroyed,
        _ => Body::Other,
    })
}

fn handle(event: &Map<String, Value>) -> Result<Body, EventError> {
    let name = required_str(event, "event", "name")?;
    let plugin = required_str(event, "event", "plugin")?;
    Ok(match name {
        "attached" => Body::Attached { plugin: plugin_name(plugin, "event.plugin")? },
        "detached" => Body::Detached,
        _ => Body::Other,
    })
}

/// Checks a plugin's package name: `janus.plugin.<name>`.
fn plugin_name(plugin: &str, field: &str) -> Result<String, EventError> {
    match plugin.strip_prefix("janus.plugin.") {
        Some(name) if !name.is_empty() => Ok(plugin.to_owned()),
        _ => Err(error(
            field,
            format!("`{plugin}` is not a Janus plugin's name (`janus.plugin.<name>`)"),
        )),
    }
}

fn webrtc(subtype: Option<u64>, event: Option<&Value>) -> Result<Body, EventError> {
    match required_subtype(subtype, 16, &[1, 2, 3, 4, 5, 6])? {
        1 => Ok(Body::IceState(
            required_str(required_object(event, "event")?, "event", "ice")?.to_owned(),
        )),
        6 => {
            let event = required_object(event, "event")?;
            Ok(match required_str(event, "event", "connection")? {
                "webrtcup" => Body::WebrtcUp,
                "hangup" => Body::Hangup {
                    reason: optional_str(event, "event", "reason")?.unwrap_or_default().to_owned(),
                },
                _ => Body::Other,
            })
        }
        _ => Ok(Body::Other),
    }
}

fn media(subtype: Option<u64>, event: Option<&Value>) -> Result<Body, EventError> {
    if required_subtype(subtype, 32, &[1, 2, 3])? != 3 {
        return Ok(Body::Other);
    }
    let reports = match event {
        // `combine_media_stats = true`: one event holds every medium's report.
        Some(Value::Array(reports)) => reports
            .iter()
            .enumerate()
            .map(|(index, report)| {
                let path = format!("event[{index}]");
                media_report(required_object(Some(report), &path)?, &path)
            })
            .collect::<Result<Vec<_>, _>>()?,
        event => vec![media_report(required_object(event, "event")?, "event")?],
    };
    Ok(Body::MediaStats(reports))
}

fn media_report(report: &Map<String, Value>, path: &str) -> Result<MediaReport, EventError> {
    let mid = required_str(report, path, "mid")?.to_owned();
    let kind = optional_str(report, path, "media")?
        .map(|kind| MediaKind::parse(&join(path, "media"), kind))
        .transpose()?;
    let value = |name: &str| -> Result<u64, EventError> {
        Ok(optional_u64(report, path, name)?.unwrap_or(0))
    };
    Ok(MediaReport {
        kind,
        substream: value("substream")?,
        codec: optional_str(report, path, "codec")?.map(str::to_owned),
        rtt: value("rtt")?,
        lost: value("lost")?,
        lost_by_remote: value("lost-by-remote")?,
        jitter_local: value("jitter-local")?,
        jitter_remote: value("jitter-remote")?,
        in_media_link_quality: value("in-media-link-quality")?,
        out_media_link_quality: value("out-media-link-quality")?,
        packets_received: value("packets-received")?,
        packets_sent: value("packets-sent")?,
        bytes_received: value("bytes-received")?,
        bytes_sent: value("bytes-sent")?,
        nacks_received: value("nacks-received")?,
        nacks_sent: value("nacks-sent")?,
        mid,
    })
}

fn plugin(event: &Map<String, Value>) -> Result<Body, EventError> {
    let plugin = plugin_name(required_str(event, "event", "plugin")?, "event.plugin")?;
    let data = match (plugin.as_str(), event.get("data")) {
        ("janus.plugin.videoroom", data) => videoroom(required_object(data, "event.data")?)
            .map(|event| event.map_or(PluginData::Other, PluginData::VideoRoom))?,
        _ => PluginData::Other,
    };
    Ok(Body::Plugin { plugin, data })
}

fn videoroom(data: &Map<String, Value>) -> Result<Option<VideoRoomEvent>, EventError> {
    const PATH: &str = "event.data";
    let Some(name) = optional_str(data, PATH, "event")? else { return Ok(None) };
    let room = || room_name(data);
    let feed = || required_u64(data, PATH, "id");
    let display = || optional_str(data, PATH, "display").map(|display| display.map(str::to_owned));
    Ok(Some(match name {
        "joined" => VideoRoomEvent::Joined { room: room()?, feed: feed()?, display: display()? },
        "published" => VideoRoomEvent::Published {
            room: room()?,
            feed: feed()?,
            display: display()?,
            streams: published_streams(data)?,
        },
        "unpublished" => VideoRoomEvent::Unpublished { room: room()?, feed: feed()? },
        "leaving" => VideoRoomEvent::Leaving { room: room()?, feed: feed()? },
        "subscribing" | "updated" => {
            VideoRoomEvent::Subscribing { room: room()?, streams: subscribed_streams(data)? }
        }
        "created" => VideoRoomEvent::Created { room: room()? },
        "destroyed" => VideoRoomEvent::Destroyed { room: room()? },
        _ => return Ok(None),
    }))
}

/// A room id as text: a number (`1234`) or a string (`string_ids = true`).
fn room_name(data: &Map<String, Value>) -> Result<String, EventError> {
    match data.get("room") {
        Some(Value::Number(number)) => {
            number.as_u64().map(|room| room.to_string()).ok_or_else(|| {
                error("event.data.room", format!("{number} is not an unsigned 64-bit integer"))
            })
        }
        Some(Value::String(room)) if !room.is_empty() => Ok(room.clone()),
        Some(Value::String(_)) => Err(error("event.data.room", "empty")),
        Some(other) => Err(error(
            "event.data.room",
            format!("expected an unsigned integer or a string, found {}", describe(other)),
        )),
        None => Err(error("event.data.room", "required")),
    }
}

fn streams(data: &Map<String, Value>) -> Result<&[Value], EventError> {
    match data.get("streams") {
        None => Ok(&[]),
        Some(Value::Array(streams)) => Ok(streams),
        Some(other) => Err(error(
            "event.data.streams",
            format!("expected an array, found {}", describe(other)),
        )),
    }
}

fn published_streams(data: &Map<String, Value>) -> Result<Vec<PublishedStream>, EventError> {
    let mut out = Vec::new();
    for (index, stream) in streams(data)?.iter().enumerate() {
        let path = format!("event.data.streams[{index}]");
        let stream = required_object(Some(stream), &path)?;
        if optional_bool(stream, &path, "disabled")? == Some(true) {
            continue;
        }
        out.push(PublishedStream {
            kind: MediaKind::parse(&join(&path, "type"), required_str(stream, &path, "type")?)?,
            mid: required_str(stream, &path, "mid")?.to_owned(),
            codec: optional_str(stream, &path, "codec")?.map(str::to_owned),
        });
    }
    Ok(out)
}

fn subscribed_streams(data: &Map<String, Value>) -> Result<Vec<SubscribedStream>, EventError> {
    let mut out = Vec::new();
    for (index, stream) in streams(data)?.iter().enumerate() {
        let path = format!("event.data.streams[{index}]");
        let stream = required_object(Some(stream), &path)?;
        // A stream without a feed (an inactive slot) carries nothing to attribute.
        let Some(feed) = optional_u64(stream, &path, "feed_id")? else { continue };
        let mid = required_str(stream, &path, "mid")?.to_owned();
        out.push(SubscribedStream {
            kind: MediaKind::parse(&join(&path, "type"), required_str(stream, &path, "type")?)?,
            feed_mid: optional_str(stream, &path, "feed_mid")?
                .map_or_else(|| mid.clone(), str::to_owned),
            mid,
            feed,
        });
    }
    Ok(out)
}

fn required_subtype(
    subtype: Option<u64>,
    event_type: u64,
    known: &[u64],
) -> Result<u64, EventError> {
    let subtype = subtype
        .ok_or_else(|| error("subtype", format!("required for events of type {event_type}")))?;
    if known.contains(&subtype) {
        Ok(subtype)
    } else {
        let known: Vec<String> = known.iter().map(u64::to_string).collect();
        Err(error(
            "subtype",
            format!("unknown subtype {subtype} of type {event_type}; known: {}", known.join(", ")),
        ))
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_object<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<&'a Map<String, Value>, EventError> {
    match value {
        Some(Value::Object(object)) => Ok(object),
        Some(other) => Err(error(path, format!("expected an object, found {}", describe(other)))),
        None => Err(error(path, "required")),
    }
}

fn required_str<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<&'a str, EventError> {
    optional_str(object, path, field)?.ok_or_else(|| error(join(path, field), "required"))
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<&'a str>, EventError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => {
            Err(error(join(path, field), format!("expected a string, found {}", describe(other))))
        }
    }
}

fn optional_bool(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<bool>, EventError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(other) => {
            Err(error(join(path, field), format!("expected a boolean, found {}", describe(other))))
        }
    }
}

fn required_u64(object: &Map<String, Value>, path: &str, field: &str) -> Result<u64, EventError> {
    optional_u64(object, path, field)?.ok_or_else(|| error(join(path, field), "required"))
}

/// Reads an unsigned integer exactly: a JSON number that is a whole number from 0 to 2^64 - 1
/// (read without a float in between), nothing else.
fn optional_u64(
    object: &Map<String, Value>,
    path: &str,
    field: &str,
) -> Result<Option<u64>, EventError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(|| {
            error(join(path, field), format!("{number} is not an unsigned 64-bit integer"))
        }),
        Some(other) => Err(error(
            join(path, field),
            format!("expected an unsigned integer, found {}", describe(other)),
        )),
    }
}

#[cfg(test)]
mod tests;
