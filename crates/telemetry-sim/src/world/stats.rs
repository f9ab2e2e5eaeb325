//! The stats a participant reports every interval: its published tracks upstream, the tracks it
//! subscribes to downstream (one simulcast layer each), data-channel bytes with bursts, and
//! signalling bytes. Media stats carry loss, jitter, RTT and a score, worse in a bad spell, and
//! changed by the `--trouble`s of the sample's time ([`crate::trouble`]).

use rand::RngExt as _;
use telemetry_core::UnixMillis;
use telemetry_core::proto as lk;
use telemetry_proto::v1;
use telemetry_proto::v1::telemetry_call::Call as Member;

use crate::CallKind;
use crate::trouble::Effects;
use crate::world::{Calls, Happening, World};

impl World {
    pub(super) fn stats(&mut self, room: usize, participant: usize, out: &mut Calls) {
        let sim = &self.rooms[room].participants[participant];
        if sim.left || !sim.active {
            return;
        }
        let interval = self.stats_interval_ms;
        let seconds = interval as f64 / 1000.0;
        let start = self.now.plus_millis(-interval);
        let bad = self.now < sim.bad_until || self.rng.random_range(0..40) == 0;
        let pid = sim.info.sid.clone();
        let room_id = self.rooms[room].room.sid.clone();
        let room_name = self.rooms[room].room.name.clone();
        // Upstream: what this participant publishes.
        let tracks = self.rooms[room].participants[participant].tracks.clone();
        for track in &tracks {
            let mut stat = self.media_stat(&track.info, track.muted, seconds, start, bad);
            let video = track.info.r#type == lk::TrackType::Video as i32;
            let mut effects = Effects::default();
            for trouble in self.troubles_at(room, participant, start) {
                effects.upstream(trouble, video);
            }
            apply(&mut stat, effects);
            out.push((
                self.stats_call(
                    &room_id,
                    &room_name,
                    &pid,
                    &track.info,
                    lk::StreamType::Upstream,
                    stat,
                ),
                CallKind::Stats,
            ));
        }
        // Downstream: what it receives.
        let subscriptions = self.rooms[room].participants[participant].subscriptions.clone();
        for (publisher, track) in subscriptions {
            let source = &self.rooms[room].participants[publisher];
            if source.left {
                continue;
            }
            let info = source.tracks[track].info.clone();
            let muted = source.tracks[track].muted;
            let mut stat = self.media_stat(&info, muted, seconds, start, bad);
            // A subscriber gets one simulcast layer.
            if stat.streams.len() > 1 {
                let layer = self.rng.random_range(0..stat.streams.len());
                stat.streams = vec![stat.streams.swap_remove(layer)];
            }
            let video = info.r#type == lk::TrackType::Video as i32;
            let mut effects = Effects::default();
            for trouble in self.troubles_at(room, publisher, start) {
                effects.received_from_publisher(trouble, video);
            }
            for trouble in self.troubles_at(room, participant, start) {
                effects.downstream(trouble);
            }
            apply(&mut stat, effects);
            out.push((
                self.stats_call(
                    &room_id,
                    &room_name,
                    &pid,
                    &info,
                    lk::StreamType::Downstream,
                    stat,
                ),
                CallKind::Stats,
            ));
        }
        // Data channel bytes, with bursts; signalling bytes.
        if self.rooms[room].participants[participant].data_channel {
            let burst = self.rng.random_range(0..12) == 0;
            let bytes_per_second = if burst {
                self.rng.random_range(1_000_000..5_000_000)
            } else {
                self.rng.random_range(2_000..20_000)
            };
            let bytes = (bytes_per_second as f64 * seconds) as u64;
            let key = v1::StatsKey {
                stream_type: lk::StreamType::Upstream as i32,
                participant_id: pid.clone(),
                track_id: format!("TR_DT{pid}"),
                ..Default::default()
            };
            let stat = lk::AnalyticsStat {
                streams: vec![lk::AnalyticsStream {
                    primary_bytes: bytes,
                    primary_packets: (bytes / 1000).max(1) as u32,
                    ..Default::default()
                }],
                ..Default::default()
            };
            out.push((self.raw_stats_call(&room_id, &room_name, key, stat), CallKind::Stats));
        }
        let signal = self.rng.random_range(200..2000);
        let key = v1::StatsKey {
            stream_type: lk::StreamType::Downstream as i32,
            participant_id: pid.clone(),
            track_id: format!("TR_SG{pid}"),
            ..Default::default()
        };
        let stat = lk::AnalyticsStat {
            streams: vec![lk::AnalyticsStream {
                primary_bytes: signal,
                primary_packets: 3,
                ..Default::default()
            }],
            ..Default::default()
        };
        out.push((self.raw_stats_call(&room_id, &room_name, key, stat), CallKind::Stats));
        let next = self.now.plus_millis(interval);
        self.schedule(next, Happening::Stats(room, participant));
    }

    /// The kinds of the troubles aimed at this participant for a sample starting at `start`.
    fn troubles_at(
        &self,
        room: usize,
        participant: usize,
        start: UnixMillis,
    ) -> Vec<crate::trouble::TroubleKind> {
        self.troubles
            .iter()
            .filter(|t| t.room == room && t.participant == participant)
            .filter(|t| t.from <= start && start < t.until)
            .map(|t| t.kind)
            .collect()
    }

    fn media_stat(
        &mut self,
        track: &lk::TrackInfo,
        muted: bool,
        seconds: f64,
        start: UnixMillis,
        bad: bool,
    ) -> lk::AnalyticsStat {
        let end = start.plus_millis((seconds * 1000.0) as i64);
        let loss_rate =
            if bad { self.rng.random_range(0.03..0.12) } else { self.rng.random_range(0.0..0.005) };
        let rtt = if bad { self.rng.random_range(150..600) } else { self.rng.random_range(20..90) };
        let jitter = if bad {
            self.rng.random_range(20_000..80_000)
        } else {
            self.rng.random_range(1_000..8_000)
        };
        let mut stream =
            |bits_per_second: f64, packet_bytes: f64, ssrc: u32, frames_per_second: f64| {
                let bytes = if muted {
                    0.0
                } else {
                    bits_per_second / 8.0 * seconds * self.rng.random_range(0.9..1.1)
                };
                let packets = (bytes / packet_bytes).round() as u32;
                let lost = (f64::from(packets) * loss_rate).round() as u32;
                lk::AnalyticsStream {
                    ssrc,
                    primary_packets: packets,
                    primary_bytes: bytes as u64,
                    retransmit_packets: lost / 2,
                    retransmit_bytes: (f64::from(lost / 2) * packet_bytes) as u64,
                    packets_lost: lost,
                    frames: (frames_per_second * seconds) as u32,
                    rtt,
                    jitter,
                    nacks: lost,
                    plis: u32::from(bad && frames_per_second > 0.0),
                    start_time: Some(start.to_timestamp()),
                    end_time: Some(end.to_timestamp()),
                    ..Default::default()
                }
            };
        let streams = if track.r#type == lk::TrackType::Video as i32 {
            [(1_500_000.0, 1, 30.0), (500_000.0, 2, 30.0), (150_000.0, 3, 15.0)]
                .into_iter()
                .enumerate()
                .map(|(layer, (bps, ssrc, fps))| {
                    let mut s = stream(bps, 1100.0, ssrc, fps);
                    s.video_layers = vec![lk::AnalyticsVideoLayer {
                        layer: 2 - layer as i32,
                        packets: s.primary_packets,
                        bytes: s.primary_bytes,
                        frames: s.frames,
                    }];
                    s
                })
                .collect()
        } else {
            vec![stream(32_000.0, 80.0, 10, 0.0)]
        };
        let score = if muted {
            0.0
        } else if bad {
            self.rng.random_range(2.0..3.5)
        } else {
            self.rng.random_range(4.0..4.6)
        };
        lk::AnalyticsStat { score, streams, mime: track.mime_type.clone(), ..Default::default() }
    }

    fn stats_call(
        &self,
        room_id: &str,
        room_name: &str,
        participant_id: &str,
        track: &lk::TrackInfo,
        direction: lk::StreamType,
        stat: lk::AnalyticsStat,
    ) -> v1::TelemetryCall {
        let key = v1::StatsKey {
            country: "DE".to_owned(),
            stream_type: direction as i32,
            participant_id: participant_id.to_owned(),
            track_id: track.sid.clone(),
            track_source: track.source,
            track_type: track.r#type,
            track: true,
        };
        self.raw_stats_call(room_id, room_name, key, stat)
    }

    fn raw_stats_call(
        &self,
        room_id: &str,
        room_name: &str,
        key: v1::StatsKey,
        stat: lk::AnalyticsStat,
    ) -> v1::TelemetryCall {
        self.call(Member::TrackStats(v1::TrackStatsCall {
            room_id: room_id.to_owned(),
            room_name: room_name.to_owned(),
            key: Some(key),
            stat: Some(stat),
        }))
    }
}

/// Changes a media sample as `effects` say: the loss as a fraction of the packets expected (with
/// the NACKs and retransmissions it causes), jitter, RTT, nothing sent; a lossy or jittery sample
/// scores 2.5. Draws nothing from the generator.
fn apply(stat: &mut lk::AnalyticsStat, effects: Effects) {
    if !effects.any() {
        return;
    }
    for stream in &mut stat.streams {
        if effects.frozen {
            stream.primary_packets = 0;
            stream.primary_bytes = 0;
            stream.retransmit_packets = 0;
            stream.retransmit_bytes = 0;
            stream.packets_lost = 0;
            stream.nacks = 0;
            stream.frames = 0;
            for layer in &mut stream.video_layers {
                layer.packets = 0;
                layer.bytes = 0;
                layer.frames = 0;
            }
        }
        if let Some(loss) = effects.loss {
            // Lost over expected (received plus lost) is `loss`.
            let lost = (f64::from(stream.primary_packets) * loss / (1.0 - loss)).round() as u32;
            let packet_bytes = stream.primary_bytes / u64::from(stream.primary_packets.max(1));
            stream.packets_lost = lost;
            stream.nacks = lost;
            stream.retransmit_packets = lost / 2;
            stream.retransmit_bytes = u64::from(lost / 2) * packet_bytes;
        }
        if let Some(jitter) = effects.jitter_us {
            stream.jitter = jitter;
        }
        if let Some(rtt) = effects.rtt_ms {
            stream.rtt = rtt;
        }
    }
    if effects.loss.is_some() || effects.jitter_us.is_some() {
        stat.score = stat.score.min(2.5);
    }
}
