//! The keys that route a stats sample: direction, stream kind and LiveKit's `StatsKey`.

use livekit_protocol as lk;

/// Which way a stream flows, seen from the SFU (LiveKit's `StreamType`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received by the SFU from a publisher (`UPSTREAM`, "in"); LiveKit's zero value.
    #[default]
    Upstream,
    /// Sent by the SFU to a subscriber (`DOWNSTREAM`, "out").
    Downstream,
}

impl Direction {
    /// Returns LiveKit's `StreamType` for this direction.
    pub fn stream_type(self) -> lk::StreamType {
        match self {
            Direction::Upstream => lk::StreamType::Upstream,
            Direction::Downstream => lk::StreamType::Downstream,
        }
    }

    /// Converts LiveKit's `StreamType` number; `None` for an unknown value.
    pub fn from_stream_type(value: i32) -> Option<Self> {
        match lk::StreamType::try_from(value).ok()? {
            lk::StreamType::Upstream => Some(Direction::Upstream),
            lk::StreamType::Downstream => Some(Direction::Downstream),
        }
    }

    /// Returns the query API's name: `upstream` or `downstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }

    /// Parses the query API's name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "upstream" => Some(Direction::Upstream),
            "downstream" => Some(Direction::Downstream),
            _ => None,
        }
    }

    /// Returns the Prometheus `direction` label LiveKit uses: `incoming` or `outgoing`.
    pub fn prometheus_label(self) -> &'static str {
        match self {
            Direction::Upstream => "incoming",
            Direction::Downstream => "outgoing",
        }
    }
}

/// What a stream carries: media (RTP), data-channel bytes, or signalling bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// An RTP media track (`StatsKey.track == true`).
    Media,
    /// Data-channel or data-track bytes.
    Data,
    /// Signalling bytes (track id `TR_SG…`).
    Signal,
}

impl StreamKind {
    /// Returns the query API's name: `media`, `data` or `signal`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Media => "media",
            StreamKind::Data => "data",
            StreamKind::Signal => "signal",
        }
    }

    /// Parses the query API's name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "media" => Some(StreamKind::Media),
            "data" => Some(StreamKind::Data),
            "signal" => Some(StreamKind::Signal),
            _ => None,
        }
    }
}

/// The prefix LiveKit gives the pseudo track that carries a participant's signalling bytes.
pub const SIGNAL_TRACK_PREFIX: &str = "TR_SG";
/// The prefix LiveKit gives the pseudo track that carries a participant's data-channel bytes.
pub const DATA_CHANNEL_TRACK_PREFIX: &str = "TR_DT";

/// Routes a `TrackStats` sample: whose stats worker, which track, which direction (LiveKit's
/// `StatsKey`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StatsKey {
    /// Country of the participant, for Prometheus labels.
    pub country: String,
    /// Which way the stream flows.
    pub stream_type: Direction,
    /// The participant whose stats worker receives the sample: the publisher for upstream media,
    /// the subscriber for downstream media.
    pub participant_id: String,
    /// The track (or pseudo track for data and signalling).
    pub track_id: String,
    /// `TrackSource` number (media only).
    pub track_source: i32,
    /// `TrackType` number (media only).
    pub track_type: i32,
    /// Whether this is a media track (`StatsKeyForTrack`) rather than data or signalling
    /// (`StatsKeyForData`).
    pub track: bool,
}

impl StatsKey {
    /// Builds the key of a media track (LiveKit's `StatsKeyForTrack`).
    pub fn for_track(
        country: impl Into<String>,
        direction: Direction,
        participant_id: impl Into<String>,
        track_id: impl Into<String>,
        source: lk::TrackSource,
        track_type: lk::TrackType,
    ) -> Self {
        Self {
            country: country.into(),
            stream_type: direction,
            participant_id: participant_id.into(),
            track_id: track_id.into(),
            track_source: source as i32,
            track_type: track_type as i32,
            track: true,
        }
    }

    /// Builds the key of data or signalling bytes (LiveKit's `StatsKeyForData`).
    pub fn for_data(
        country: impl Into<String>,
        direction: Direction,
        participant_id: impl Into<String>,
        track_id: impl Into<String>,
    ) -> Self {
        Self {
            country: country.into(),
            stream_type: direction,
            participant_id: participant_id.into(),
            track_id: track_id.into(),
            track_source: 0,
            track_type: 0,
            track: false,
        }
    }

    /// Returns what the stream carries.
    pub fn kind(&self) -> StreamKind {
        if self.track {
            StreamKind::Media
        } else if self.track_id.starts_with(SIGNAL_TRACK_PREFIX) {
            StreamKind::Signal
        } else {
            StreamKind::Data
        }
    }
}
