//! Validation of what ingest accepts, before anything takes effect: numbers, times and the
//! lengths of caller-chosen strings. A call that fails is rejected alone (a recorder item is
//! dropped and counted), with a message naming the field path and the rule.
//!
//! # The rules
//!
//! Rejection is the rule; nothing is clamped. A clamped value would be stored as if the sender
//! had sent it and hide a broken sender, while a rejection is visible to it and names the field.
//!
//! - **Floats** (`f32`, `f64`, anywhere in a call, event or room state) must be finite: protobuf
//!   floats can carry NaN and ±infinity, the JSON mapping accepts `"NaN"` and `"Infinity"`, and
//!   a JSON number beyond `f32` reads as infinity. None of them can be stored (a NaN would break
//!   the query API's JSON answers). By field name, besides: `score`, `minScore`, `medianScore`
//!   (LiveKit's connection quality, a MOS) in `0..=5`; `packetLossPercentage` in `0..=100`;
//!   rates, bitrates, durations, jitters, frame rates and clock rates (`RTPStats`, `RTPDrift`,
//!   encoding options) at least 0. Other floats (`driftMs`, ...) may be negative.
//! - **Times** a record is filed under (a call's `at`, a stats stream's `startTime` and
//!   `endTime`, a stat's `timeStamp`, a recorder event's `timestamp`, a node room state's
//!   `timestamp`) must be valid protobuf timestamps (nanos in `0..=999_999_999`, years 1 to 9999),
//!   at most [`MAX_FUTURE_MILLIS`] ahead of this server's clock and no older than
//!   `store.retention` (such a record would be pruned at once). A stream's `endTime` is not before
//!   its `startTime`; a sample of `trackStats` covers at most [`MAX_SAMPLE_INTERVAL_MILLIS`].
//!   `room.creationTime` (seconds; it stamps `ROOM_CREATED`) is 0 (unset) or a time from 1970 up
//!   to [`MAX_FUTURE_MILLIS`] ahead. Every other timestamp inside a payload must be valid (the
//!   store renders payloads as JSON, which an invalid timestamp cannot be).
//! - **Integers.** JSON numbers outside a field's type are refused by decoding, naming the field;
//!   on the protobuf wire a varint wider than its field is truncated, as by every protobuf
//!   decoder, and cannot be told apart afterwards. `rtt` and `jitter` of a stats stream are
//!   refused above `i32::MAX` (a negative value sent as unsigned). Stats counters that are
//!   negative when read as signed are not refused here: the core skips such samples and counts
//!   them (LiveKit's validity rule, `rtc_telemetry_stats_samples_total{outcome="invalid"}`); a
//!   recorder stat with a byte count above `i64::MAX` cannot be stored and is dropped. Other
//!   integers of payloads are stored as sent and enter no computation.
//! - **Strings** that become keys, ids or metric labels are at most `limits.max_id_bytes`
//!   ([`is_id_field`]): sids, ids, identities, room names, node ids, guards, countries, mime
//!   types, `trackSubscribeFailed.error`. Every other string (names, metadata, reasons, map keys
//!   and values) is at most `limits.max_text_bytes`.
//!
//! Every string and float of a lifecycle call, recorder event and node room state is reached by
//! serializing the message into a [`serde::Serializer`] that checks as it goes: the store renders
//! payloads through the same `Serialize` implementations, so what passes here renders there.
//! `trackStats` (the bulk of the traffic) and recorder stats are checked field by field instead.

use pbjson_types::Timestamp;
use serde::Serialize;
use serde::ser::{self, Impossible};
use telemetry_core::UnixMillis;
use telemetry_core::proto as lk;
use telemetry_proto::v1;

#[cfg(test)]
mod tests;

/// How far ahead of this server's clock a time may be (SFU clocks drift); later is refused.
pub const MAX_FUTURE_MILLIS: i64 = 5 * 60 * 1000;

/// The longest interval one stats sample may claim: ten times the longest cadence a real SFU
/// reports at (LiveKit's connection stats: seconds; Janus: 1 to 10 s). A sample's bytes are spread
/// over a node-rate cell per second it covers, so this also bounds the cells one sample makes
/// (300), and with `limits.max_nodes` the node-rate state a caller can create.
pub const MAX_SAMPLE_INTERVAL_MILLIS: i64 = 5 * 60 * 1000;

/// The caps validation applies, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `limits.max_id_bytes`.
    pub max_id_bytes: usize,
    /// `limits.max_text_bytes`.
    pub max_text_bytes: usize,
    /// `store.retention`, in milliseconds: how old a time may be.
    pub max_age_millis: i64,
}

impl Default for Limits {
    /// The defaults of `config/default.toml`.
    fn default() -> Self {
        Self { max_id_bytes: 256, max_text_bytes: 65536, max_age_millis: 30 * 24 * 3600 * 1000 }
    }
}

impl Limits {
    /// The limits of `config`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_id_bytes: config.limits.max_id_bytes,
            max_text_bytes: config.limits.max_text_bytes,
            max_age_millis: i64::try_from(config.store.retention.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// The allowed range of a float, by field name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Range {
    /// Any finite number.
    Finite,
    /// At least 0.
    NonNegative,
    /// `0..=5`.
    Score,
    /// `0..=100`.
    Percent,
}

impl Range {
    fn of(field: &str) -> Self {
        match field {
            "score" | "minScore" | "medianScore" => Range::Score,
            "packetLossPercentage" => Range::Percent,
            "duration"
            | "packetRate"
            | "bitrate"
            | "packetLossRate"
            | "packetDuplicateRate"
            | "bitrateDuplicate"
            | "packetPaddingRate"
            | "bitratePadding"
            | "frameRate"
            | "framerate"
            | "jitterCurrent"
            | "jitterMax"
            | "clockRate"
            | "keyFrameInterval" => Range::NonNegative,
            _ => Range::Finite,
        }
    }

    fn contains(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Range::Finite => true,
                Range::NonNegative => value >= 0.0,
                Range::Score => (0.0..=5.0).contains(&value),
                Range::Percent => (0.0..=100.0).contains(&value),
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Finite => "",
            Range::NonNegative => " of at least 0",
            Range::Score => " in 0..=5",
            Range::Percent => " in 0..=100",
        }
    }
}

/// Checks a float named `field` (its last path segment) shown as `shown`; `path` names it whole.
fn check_float(
    path: impl FnOnce() -> String,
    field: &str,
    value: f64,
    shown: &dyn std::fmt::Display,
) -> Result<(), String> {
    let range = Range::of(field);
    if range.contains(value) {
        return Ok(());
    }
    let hint = if value.is_infinite() {
        " (a JSON number beyond the field's type reads as infinity)"
    } else {
        ""
    };
    Err(format!("{}: {shown} is not a finite number{}{hint}", path(), range.describe()))
}

/// Whether the string at a path ending in `field` (after `parent`, the field before it, if any)
/// becomes a key, an id or a metric label, and is capped by `limits.max_id_bytes`.
pub fn is_id_field(parent: Option<&str>, field: &str, whole: &str) -> bool {
    match field {
        "sid"
        | "id"
        | "identity"
        | "participantIdentity"
        | "nodeId"
        | "node"
        | "participantId"
        | "trackId"
        | "roomId"
        | "roomName"
        | "egressId"
        | "ingressId"
        | "guard"
        | "country"
        | "mime"
        | "mimeType"
        | "analyticsKey"
        | "region"
        | "projectId" => true,
        "name" => matches!(parent, Some("room" | "rooms")),
        "error" => whole == "trackSubscribeFailed.error",
        _ => false,
    }
}

/// Checks calls, events and stats against the limits, relative to when they were received.
#[derive(Clone, Copy, Debug)]
pub struct Checker<'a> {
    limits: &'a Limits,
    received_at: UnixMillis,
}

impl<'a> Checker<'a> {
    /// A checker of what was received at `received_at`.
    pub fn new(limits: &'a Limits, received_at: UnixMillis) -> Self {
        Self { limits, received_at }
    }

    /// Checks one string that becomes a key, an id or a label.
    ///
    /// # Errors
    ///
    /// A message naming the field and the cap.
    pub fn id(&self, path: impl FnOnce() -> String, value: &str) -> Result<(), String> {
        check_len(path, value, self.limits.max_id_bytes, "limits.max_id_bytes")
    }

    /// Checks a time a record is filed under: valid, not too far ahead, not too old.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn time(&self, path: impl Fn() -> String, time: &Timestamp) -> Result<UnixMillis, String> {
        let at = UnixMillis::from_timestamp(time).ok_or_else(|| {
            format!(
                "{}: not a valid timestamp (seconds {}, nanos {}): nanos must be in 0..=999999999 and the time within the years 1 to 9999",
                path(),
                time.seconds,
                time.nanos
            )
        })?;
        let ahead = at.millis_since(self.received_at);
        if ahead > MAX_FUTURE_MILLIS {
            return Err(format!(
                "{}: {ahead} ms in the future (more than {} s ahead of this server's clock)",
                path(),
                MAX_FUTURE_MILLIS / 1000
            ));
        }
        let age = self.received_at.millis_since(at);
        if age > self.limits.max_age_millis {
            return Err(format!(
                "{}: {} s in the past, older than `store.retention` ({} s): it would be pruned at once",
                path(),
                age / 1000,
                self.limits.max_age_millis / 1000
            ));
        }
        Ok(at)
    }

    /// Checks `room.creationTime` (seconds): 0 (unset) or from 1970 to a little ahead of now.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn creation_time(&self, path: impl FnOnce() -> String, seconds: i64) -> Result<(), String> {
        let latest = self.received_at.plus_millis(MAX_FUTURE_MILLIS).as_secs();
        if (0..=latest).contains(&seconds) {
            Ok(())
        } else {
            Err(format!(
                "{}: {seconds} is not a time in seconds from 1970 to at most {} s ahead of this server's clock",
                path(),
                MAX_FUTURE_MILLIS / 1000
            ))
        }
    }

    /// Checks a `trackStats` call's strings and its stat (the sample rules).
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn track_stats(&self, call: &v1::TrackStatsCall) -> Result<(), String> {
        self.id(|| "trackStats.roomId".to_owned(), &call.room_id)?;
        self.id(|| "trackStats.roomName".to_owned(), &call.room_name)?;
        if let Some(key) = &call.key {
            self.id(|| "trackStats.key.country".to_owned(), &key.country)?;
            self.id(|| "trackStats.key.participantId".to_owned(), &key.participant_id)?;
            self.id(|| "trackStats.key.trackId".to_owned(), &key.track_id)?;
        }
        if let Some(stat) = &call.stat {
            self.stat("trackStats.stat", stat, StatKind::Sample)?;
        }
        Ok(())
    }

    /// Checks an `AnalyticsStat` under `prefix`: its strings, scores, times and streams.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn stat(
        &self,
        prefix: &str,
        stat: &lk::AnalyticsStat,
        kind: StatKind,
    ) -> Result<(), String> {
        let field = |name: &str| format!("{prefix}.{name}");
        for (name, value) in [
            ("id", &stat.id),
            ("analyticsKey", &stat.analytics_key),
            ("node", &stat.node),
            ("roomId", &stat.room_id),
            ("roomName", &stat.room_name),
            ("participantId", &stat.participant_id),
            ("trackId", &stat.track_id),
            ("mime", &stat.mime),
        ] {
            self.id(|| field(name), value)?;
        }
        for (name, value) in [
            ("score", stat.score),
            ("minScore", stat.min_score),
            ("medianScore", stat.median_score),
        ] {
            check_float(|| field(name), name, f64::from(value), &value)?;
        }
        if let Some(time) = &stat.time_stamp {
            self.time(|| field("timeStamp"), time)?;
        }
        for (index, stream) in stat.streams.iter().enumerate() {
            let field = |name: &str| format!("{prefix}.streams[{index}].{name}");
            for (name, value) in [("rtt", stream.rtt), ("jitter", stream.jitter)] {
                if value > i32::MAX as u32 {
                    return Err(format!(
                        "{}: {value} is more than {} (a negative value sent as unsigned)",
                        field(name),
                        i32::MAX
                    ));
                }
            }
            if kind == StatKind::Window {
                for (name, value) in [
                    ("primaryBytes", stream.primary_bytes),
                    ("retransmitBytes", stream.retransmit_bytes),
                    ("paddingBytes", stream.padding_bytes),
                ] {
                    if value > i64::MAX as u64 {
                        return Err(format!(
                            "{}: {value} is more than {} and cannot be stored",
                            field(name),
                            i64::MAX
                        ));
                    }
                }
            }
            let start = match &stream.start_time {
                Some(time) => Some(self.time(|| field("startTime"), time)?),
                None => None,
            };
            let end = match &stream.end_time {
                Some(time) => Some(self.time(|| field("endTime"), time)?),
                None => None,
            };
            if let (Some(start), Some(end)) = (start, end) {
                if end < start {
                    return Err(format!("{}: before `startTime`", field("endTime")));
                }
                if kind == StatKind::Sample && end.millis_since(start) > MAX_SAMPLE_INTERVAL_MILLIS
                {
                    return Err(format!(
                        "{}: the sample covers {} s, more than the {} s one sample may cover",
                        field("endTime"),
                        end.millis_since(start) / 1000,
                        MAX_SAMPLE_INTERVAL_MILLIS / 1000
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every string, float and timestamp of `value` (a protobuf message with its JSON
    /// mapping), its paths starting with `prefix` (empty: none).
    ///
    /// # Errors
    ///
    /// A message naming the first field at fault.
    pub fn walk<T: Serialize + ?Sized>(&self, prefix: &str, value: &T) -> Result<(), String> {
        let mut walker = Walker { limits: self.limits, prefix, path: Vec::new(), found: None };
        match value.serialize(&mut walker) {
            Ok(()) => Ok(()),
            Err(WalkError(message)) => Err(walker.found.take().unwrap_or_else(|| {
                // Raised by a type's own `Serialize` (an invalid timestamp, say), not by a rule.
                format!("{}: cannot be stored: {message}", walker.render_path())
            })),
        }
    }

    /// Checks a recorder event: every field, and its `timestamp` as a time it is filed under.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn event(&self, prefix: &str, event: &lk::AnalyticsEvent) -> Result<(), String> {
        if let Some(time) = &event.timestamp {
            self.time(|| format!("{prefix}.timestamp"), time)?;
        }
        self.walk(prefix, event)
    }

    /// Checks a node's room states: every field, and its `timestamp`.
    ///
    /// # Errors
    ///
    /// A message naming the field.
    pub fn node_rooms(&self, rooms: &lk::AnalyticsNodeRooms) -> Result<(), String> {
        if let Some(time) = &rooms.timestamp {
            self.time(|| "timestamp".to_owned(), time)?;
        }
        self.walk("", rooms)
    }
}

/// Which rules a stat's streams follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatKind {
    /// A `trackStats` sample: covers at most [`MAX_SAMPLE_INTERVAL_MILLIS`]; its counters follow
    /// the core's validity rule.
    Sample,
    /// A recorder stat, a window LiveKit already coalesced: stored as it is, so its byte counts
    /// must fit the store's signed 64-bit columns.
    Window,
}

fn check_len(
    path: impl FnOnce() -> String,
    value: &str,
    limit: usize,
    key: &str,
) -> Result<(), String> {
    if value.len() <= limit {
        Ok(())
    } else {
        Err(format!("{}: {} bytes, more than the {limit} allowed (`{key}`)", path(), value.len()))
    }
}

/// One step of a path.
#[derive(Clone, Debug)]
enum Segment {
    Field(&'static str),
    Index(usize),
    Key(String),
}

/// The checking serializer: walks a value, keeping the path, and stops at the first problem.
struct Walker<'a> {
    limits: &'a Limits,
    prefix: &'a str,
    path: Vec<Segment>,
    found: Option<String>,
}

#[derive(Debug)]
struct WalkError(String);

impl std::fmt::Display for WalkError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        WalkError(message.to_string())
    }
}

impl Walker<'_> {
    fn render_path(&self) -> String {
        let mut text = self.prefix.to_owned();
        for segment in &self.path {
            match segment {
                Segment::Field(name) => {
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(name);
                }
                Segment::Index(index) => text.push_str(&format!("[{index}]")),
                Segment::Key(key) => text.push_str(&format!("[{key:?}]")),
            }
        }
        text
    }

    fn last_field(&self) -> Option<&'static str> {
        match self.path.last() {
            Some(Segment::Field(name)) => Some(name),
            _ => None,
        }
    }

    /// The field before the last one, skipping indices and keys.
    fn parent_field(&self) -> Option<&'static str> {
        self.path.iter().rev().skip(1).find_map(|segment| match segment {
            Segment::Field(name) => Some(*name),
            _ => None,
        })
    }

    fn fail(&mut self, message: String) -> WalkError {
        self.found = Some(message);
        WalkError(String::new())
    }

    fn check_str(&mut self, value: &str) -> Result<(), WalkError> {
        // Short strings pass either cap; only a long one needs its field's class.
        if value.len() <= self.limits.max_id_bytes {
            return Ok(());
        }
        let (limit, key) = match self.last_field() {
            Some(field) if is_id_field(self.parent_field(), field, &self.render_path()) => {
                (self.limits.max_id_bytes, "limits.max_id_bytes")
            }
            _ => (self.limits.max_text_bytes, "limits.max_text_bytes"),
        };
        let path = self.render_path();
        check_len(|| path, value, limit, key).map_err(|message| self.fail(message))
    }

    fn check_float(&mut self, value: f64, shown: &dyn std::fmt::Display) -> Result<(), WalkError> {
        let field = self.last_field().unwrap_or("");
        let path = self.render_path();
        check_float(|| path, field, value, shown).map_err(|message| self.fail(message))
    }
}

type WalkResult = Result<(), WalkError>;

impl ser::Serializer for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> WalkResult {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> WalkResult {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> WalkResult {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> WalkResult {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> WalkResult {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> WalkResult {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> WalkResult {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> WalkResult {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> WalkResult {
        Ok(())
    }
    fn serialize_f32(self, value: f32) -> WalkResult {
        self.check_float(f64::from(value), &value)
    }
    fn serialize_f64(self, value: f64) -> WalkResult {
        self.check_float(value, &value)
    }
    fn serialize_char(self, _: char) -> WalkResult {
        Ok(())
    }
    fn serialize_str(self, value: &str) -> WalkResult {
        self.check_str(value)
    }
    fn serialize_bytes(self, value: &[u8]) -> WalkResult {
        if value.len() > self.limits.max_text_bytes {
            let path = self.render_path();
            let message = format!(
                "{path}: {} bytes, more than the {} allowed (`limits.max_text_bytes`)",
                value.len(),
                self.limits.max_text_bytes
            );
            return Err(self.fail(message));
        }
        Ok(())
    }
    fn serialize_none(self) -> WalkResult {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> WalkResult {
        value.serialize(self)
    }
    fn serialize_unit(self) -> WalkResult {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> WalkResult {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> WalkResult {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> WalkResult {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> WalkResult {
        self.path.push(Segment::Field(variant));
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        self.path.push(Segment::Index(0));
        Ok(self)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self, WalkError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Self, WalkError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Self, WalkError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        self.path.push(Segment::Key(String::new()));
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        Ok(self)
    }
}

impl Walker<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        value.serialize(&mut *self)?;
        if let Some(Segment::Index(index)) = self.path.last_mut() {
            *index += 1;
        }
        Ok(())
    }

    fn end_sequence(&mut self) -> WalkResult {
        self.path.pop();
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> WalkResult {
        self.path.push(Segment::Field(name));
        value.serialize(&mut *self)?;
        self.path.pop();
        Ok(())
    }
}

impl ser::SerializeSeq for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        self.element(value)
    }
    fn end(self) -> WalkResult {
        self.end_sequence()
    }
}

impl ser::SerializeTuple for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        self.element(value)
    }
    fn end(self) -> WalkResult {
        self.end_sequence()
    }
}

impl ser::SerializeTupleStruct for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        self.element(value)
    }
    fn end(self) -> WalkResult {
        self.end_sequence()
    }
}

impl ser::SerializeTupleVariant for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        self.element(value)
    }
    fn end(self) -> WalkResult {
        self.end_sequence()
    }
}

impl ser::SerializeMap for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> WalkResult {
        let key = key.serialize(KeyText)?;
        if key.len() > self.limits.max_text_bytes {
            self.path.pop();
            let path = self.render_path();
            let message = format!(
                "{path}: a map key of {} bytes, more than the {} allowed (`limits.max_text_bytes`)",
                key.len(),
                self.limits.max_text_bytes
            );
            return Err(self.fail(message));
        }
        if let Some(Segment::Key(current)) = self.path.last_mut() {
            *current = key;
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> WalkResult {
        value.serialize(&mut **self)
    }
    fn end(self) -> WalkResult {
        self.end_sequence()
    }
}

impl ser::SerializeStruct for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> WalkResult {
        self.field(name, value)
    }
    fn end(self) -> WalkResult {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Walker<'_> {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> WalkResult {
        self.field(name, value)
    }
    fn end(self) -> WalkResult {
        Ok(())
    }
}

/// Renders a map key (a string or a number, in the protobuf JSON mapping) as text.
struct KeyText;

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = WalkError;
    type SerializeSeq = Impossible<String, WalkError>;
    type SerializeTuple = Impossible<String, WalkError>;
    type SerializeTupleStruct = Impossible<String, WalkError>;
    type SerializeTupleVariant = Impossible<String, WalkError>;
    type SerializeMap = Impossible<String, WalkError>;
    type SerializeStruct = Impossible<String, WalkError>;
    type SerializeStructVariant = Impossible<String, WalkError>;

    fn serialize_bool(self, value: bool) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_i8(self, value: i8) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_i16(self, value: i16) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_i32(self, value: i32) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_i64(self, value: i64) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_u8(self, value: u8) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_u16(self, value: u16) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_u32(self, value: u32) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_u64(self, value: u64) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_f32(self, value: f32) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_f64(self, value: f64) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_char(self, value: char) -> Result<String, WalkError> {
        Ok(value.to_string())
    }
    fn serialize_str(self, value: &str) -> Result<String, WalkError> {
        Ok(value.to_owned())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, WalkError> {
        Err(WalkError("a map key of bytes".to_owned()))
    }
    fn serialize_none(self) -> Result<String, WalkError> {
        Ok(String::new())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, WalkError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, WalkError> {
        Ok(String::new())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, WalkError> {
        Ok(String::new())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, WalkError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, WalkError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, WalkError> {
        Err(WalkError("a map key that is not text".to_owned()))
    }
}
