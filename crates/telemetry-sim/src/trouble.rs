//! Trouble injected into a simulation at chosen times (`simulate --trouble`), so that a run shows
//! the quality issues the core detects, deterministically for a `--seed`.
//!
//! The syntax is `KIND[:ROOM.PARTICIPANT]@FROM..UNTIL`: `lossy-uplink@30s..90s`,
//! `bad-downlink:0.2@1m..2m`. `FROM` and `UNTIL` are offsets from the start of the simulated time;
//! a stats sample is troubled when it starts in `[FROM, UNTIL)`. Without `:ROOM.PARTICIPANT`
//! (indices from 0) the participant is drawn from the seed (by a generator of its own, seeded
//! from `--seed`). What each kind does to the samples:
//!
//! - `lossy-uplink`: the participant's published tracks lose 20 % upstream, and every subscriber
//!   receives that loss downstream (as in reality: what never reached the SFU is not forwarded);
//! - `bad-downlink`: what the participant receives loses 15 % with 60 ms of jitter (its own
//!   downstream only);
//! - `frozen-video`: its camera track sends nothing (not muted), upstream and to its subscribers;
//! - `high-rtt`: 650 ms round trip on everything it sends and receives.
//!
//! The participant a trouble is aimed at always gets media and joins within 3 s of its room's
//! start, so the trouble is seen (unless it falls after the participant has left).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What goes wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TroubleKind {
    /// The publisher's uplink loses packets; its subscribers receive the loss.
    LossyUplink,
    /// A subscriber's downlink loses packets, with jitter.
    BadDownlink,
    /// A published camera sends nothing.
    FrozenVideo,
    /// Every stream of the participant has a high round-trip time.
    HighRtt,
}

impl TroubleKind {
    /// Every kind.
    pub const ALL: [TroubleKind; 4] =
        [Self::LossyUplink, Self::BadDownlink, Self::FrozenVideo, Self::HighRtt];

    /// Its name in `--trouble`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LossyUplink => "lossy-uplink",
            Self::BadDownlink => "bad-downlink",
            Self::FrozenVideo => "frozen-video",
            Self::HighRtt => "high-rtt",
        }
    }
}

/// One `--trouble`: a kind, who (or drawn from the seed), and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trouble {
    /// What goes wrong.
    pub kind: TroubleKind,
    /// The room's and the participant's index; `None` draws them from the seed.
    pub target: Option<(u32, u32)>,
    /// From this offset of the simulated time.
    pub from: Duration,
    /// Until this offset (exclusive).
    pub until: Duration,
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_str())?;
        if let Some((room, participant)) = self.target {
            write!(f, ":{room}.{participant}")?;
        }
        write!(
            f,
            "@{}..{}",
            humantime::format_duration(self.from),
            humantime::format_duration(self.until)
        )
    }
}

impl FromStr for Trouble {
    type Err = String;

    /// Parses `KIND[:ROOM.PARTICIPANT]@FROM..UNTIL`; the error names `--trouble` and what is
    /// wrong.
    fn from_str(text: &str) -> Result<Self, String> {
        let fail = |why: String| {
            format!(
                "invalid `--trouble` {text:?}: {why} (write KIND[:ROOM.PARTICIPANT]@FROM..UNTIL, \
                 like \"lossy-uplink@30s..90s\")"
            )
        };
        let (what, when) = text.split_once('@').ok_or_else(|| fail("no `@`".to_owned()))?;
        let (kind, target) = match what.split_once(':') {
            Some((kind, target)) => (kind, Some(target)),
            None => (what, None),
        };
        let kind = TroubleKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| {
            let known: Vec<&str> = TroubleKind::ALL.iter().map(|k| k.as_str()).collect();
            fail(format!("unknown kind {kind:?} (one of {})", known.join(", ")))
        })?;
        let target = target
            .map(|target| {
                let (room, participant) = target
                    .split_once('.')
                    .ok_or_else(|| fail(format!("target {target:?} is not ROOM.PARTICIPANT")))?;
                let index = |part: &str, name: &str| {
                    part.parse::<u32>()
                        .map_err(|_| fail(format!("{name} index {part:?} is not a number from 0")))
                };
                Ok::<_, String>((index(room, "room")?, index(participant, "participant")?))
            })
            .transpose()?;
        let (from, until) =
            when.split_once("..").ok_or_else(|| fail(format!("no `..` in {when:?}")))?;
        let offset = |part: &str, name: &str| {
            humantime::parse_duration(part.trim())
                .map_err(|error| fail(format!("{name} {part:?}: {error}")))
        };
        let (from, until) = (offset(from, "start")?, offset(until, "end")?);
        if from >= until {
            return Err(fail("the start is not before the end".to_owned()));
        }
        Ok(Self { kind, target, from, until })
    }
}

/// Parses one `--trouble` (clap's value parser).
///
/// # Errors
///
/// Returns a message naming `--trouble` and what is wrong.
pub fn parse_trouble(text: &str) -> Result<Trouble, String> {
    text.parse()
}

/// What troubles do to one stats sample of a track and direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Effects {
    /// Packets lost, as a fraction of the packets expected.
    pub(crate) loss: Option<f64>,
    /// Jitter in microseconds.
    pub(crate) jitter_us: Option<u32>,
    /// Round-trip time in milliseconds.
    pub(crate) rtt_ms: Option<u32>,
    /// Nothing is sent.
    pub(crate) frozen: bool,
}

/// A lossy uplink's loss, and what the publisher's subscribers receive of it.
const UPLINK_LOSS: f64 = 0.20;
/// A bad downlink's loss and jitter.
const DOWNLINK_LOSS: f64 = 0.15;
const DOWNLINK_JITTER_US: u32 = 60_000;
/// The round-trip time of `high-rtt`.
const HIGH_RTT_MS: u32 = 650;

impl Effects {
    /// Adds what `kind` does to an upstream sample of the troubled participant's `video` track or
    /// not.
    pub(crate) fn upstream(&mut self, kind: TroubleKind, video: bool) {
        match kind {
            TroubleKind::LossyUplink => self.loss = Some(UPLINK_LOSS),
            TroubleKind::FrozenVideo => self.frozen |= video,
            TroubleKind::HighRtt => self.rtt_ms = Some(HIGH_RTT_MS),
            TroubleKind::BadDownlink => {}
        }
    }

    /// Adds what `kind` of the publisher does to a subscriber's downstream sample of its track.
    pub(crate) fn received_from_publisher(&mut self, kind: TroubleKind, video: bool) {
        match kind {
            TroubleKind::LossyUplink => {
                self.loss = Some(self.loss.map_or(UPLINK_LOSS, |loss| loss.max(UPLINK_LOSS)));
            }
            TroubleKind::FrozenVideo => self.frozen |= video,
            TroubleKind::HighRtt | TroubleKind::BadDownlink => {}
        }
    }

    /// Adds what `kind` of the subscriber does to its own downstream sample.
    pub(crate) fn downstream(&mut self, kind: TroubleKind) {
        match kind {
            TroubleKind::BadDownlink => {
                self.loss = Some(self.loss.map_or(DOWNLINK_LOSS, |loss| loss.max(DOWNLINK_LOSS)));
                self.jitter_us = Some(DOWNLINK_JITTER_US);
            }
            TroubleKind::HighRtt => self.rtt_ms = Some(HIGH_RTT_MS),
            TroubleKind::LossyUplink | TroubleKind::FrozenVideo => {}
        }
    }

    /// Whether anything changes.
    pub(crate) fn any(&self) -> bool {
        *self != Self::default()
    }
}

#[cfg(test)]
mod tests;
