//! Property tests of coalescing: the running fold agrees with a direct model of LiveKit's
//! `coalesce` over the raw sample list (reference §2.7).

use livekit_protocol as lk;
use proptest::prelude::*;

use crate::coalesce::{SampleSummary, TrackAccumulator, is_valid_sample};
use crate::time::UnixMillis;

/// LiveKit's rules applied to the whole list at once.
struct Model {
    sums: [u64; 12],
    rtt: u32,
    jitter: u32,
    layer: Option<(i32, u64, u64, u64)>,
    score: f32,
    min_score: f32,
    median_score: f32,
    mime: String,
}

fn model(samples: &[lk::AnalyticsStat]) -> Model {
    let valid: Vec<&lk::AnalyticsStat> = samples.iter().filter(|s| is_valid_sample(s)).collect();
    let mut sums = [0u64; 12];
    let (mut rtt, mut jitter) = (0, 0);
    // Per layer id: the first occurrence, then later ones added.
    let mut layers: Vec<(i32, u64, u64, u64)> = Vec::new();
    for sample in &valid {
        for s in &sample.streams {
            let values = [
                u64::from(s.primary_packets),
                s.primary_bytes,
                u64::from(s.retransmit_packets),
                s.retransmit_bytes,
                u64::from(s.padding_packets),
                s.padding_bytes,
                u64::from(s.packets_lost),
                u64::from(s.packets_out_of_order),
                u64::from(s.frames),
                u64::from(s.nacks),
                u64::from(s.plis),
                u64::from(s.firs),
            ];
            for (sum, value) in sums.iter_mut().zip(values) {
                *sum += value;
            }
            rtt = rtt.max(s.rtt);
            jitter = jitter.max(s.jitter);
            for layer in &s.video_layers {
                match layers.iter_mut().find(|l| l.0 == layer.layer) {
                    Some(l) => {
                        l.1 += u64::from(layer.packets);
                        l.2 += layer.bytes;
                        l.3 += u64::from(layer.frames);
                    }
                    None => layers.push((
                        layer.layer,
                        u64::from(layer.packets),
                        layer.bytes,
                        u64::from(layer.frames),
                    )),
                }
            }
        }
    }
    let mut scores: Vec<f32> = valid.iter().map(|s| s.score).filter(|&score| score > 0.0).collect();
    scores.sort_by(f32::total_cmp);
    let (score, min_score, median_score) = if scores.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        let mean = (scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64) as f32;
        let n = scores.len();
        let median = if n % 2 == 1 {
            scores[n / 2]
        } else {
            ((f64::from(scores[n / 2 - 1]) + f64::from(scores[n / 2])) / 2.0) as f32
        };
        (mean, scores[0], median)
    };
    Model {
        sums,
        rtt,
        jitter,
        layer: layers.into_iter().max_by_key(|l| l.0),
        score,
        min_score,
        median_score,
        mime: samples.last().map(|s| s.mime.clone()).unwrap_or_default(),
    }
}

fn counter32() -> impl Strategy<Value = u32> {
    // Mostly small deltas, sometimes a "negative" one (bit 31 set).
    prop_oneof![8 => 0u32..10_000, 1 => (1u32 << 31)..=u32::MAX]
}

fn counter64() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..10_000_000, 1 => (1u64 << 63)..=u64::MAX]
}

fn stream() -> impl Strategy<Value = lk::AnalyticsStream> {
    (
        (counter32(), counter64(), counter32(), counter64(), counter32(), counter64()),
        (counter32(), counter32(), counter32(), 0u32..500, 0u32..100_000),
        (counter32(), counter32(), counter32()),
        prop::collection::vec((0i32..3, counter32(), counter64(), counter32()), 0..3),
    )
        .prop_map(|(volume, quality, rtcp, layers)| lk::AnalyticsStream {
            primary_packets: volume.0,
            primary_bytes: volume.1,
            retransmit_packets: volume.2,
            retransmit_bytes: volume.3,
            padding_packets: volume.4,
            padding_bytes: volume.5,
            packets_lost: quality.0,
            packets_out_of_order: quality.1,
            frames: quality.2,
            rtt: quality.3,
            jitter: quality.4,
            nacks: rtcp.0,
            plis: rtcp.1,
            firs: rtcp.2,
            video_layers: layers
                .into_iter()
                .map(|(layer, packets, bytes, frames)| lk::AnalyticsVideoLayer {
                    layer,
                    packets,
                    bytes,
                    frames,
                })
                .collect(),
            ..Default::default()
        })
}

fn sample() -> impl Strategy<Value = lk::AnalyticsStat> {
    (
        prop::collection::vec(stream(), 0..4),
        prop_oneof![3 => Just(0.0f32), 5 => 0.5f32..5.0, 1 => -1.0f32..0.0],
        prop_oneof![Just(""), Just("video/VP8"), Just("video/H264"), Just("audio/opus")],
    )
        .prop_map(|(streams, score, mime)| lk::AnalyticsStat {
            streams,
            score,
            mime: mime.to_owned(),
            ..Default::default()
        })
}

fn fold(samples: &[lk::AnalyticsStat]) -> crate::coalesce::Coalesced {
    let mut accumulator = TrackAccumulator::default();
    for (index, sample) in samples.iter().enumerate() {
        let at = UnixMillis(index as i64 * 5000);
        accumulator.record(sample, &SampleSummary::of(sample), (at, at.plus_millis(5000)));
    }
    accumulator.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_fold_agrees_with_livekits_rules(samples in prop::collection::vec(sample(), 1..12)) {
        let expected = model(&samples);
        let coalesced = fold(&samples);
        let stream = coalesced.stream();
        let t = &coalesced.totals;
        let sums = [
            t.primary_packets, t.primary_bytes, t.retransmit_packets, t.retransmit_bytes, t.padding_packets,
            t.padding_bytes, t.packets_lost, t.packets_out_of_order, t.frames, t.nacks, t.plis, t.firs,
        ];
        prop_assert_eq!(sums, expected.sums, "sums over valid samples only");
        prop_assert_eq!(stream.primary_bytes, expected.sums[1]);
        prop_assert_eq!(u64::from(stream.primary_packets), expected.sums[0].min(u64::from(u32::MAX)));
        prop_assert_eq!((stream.rtt, stream.jitter), (expected.rtt, expected.jitter), "maxima");
        prop_assert_eq!(stream.ssrc, 0);
        let layer = stream.video_layers.first().map(|l| (l.layer, u64::from(l.packets), l.bytes, u64::from(l.frames)));
        prop_assert_eq!(stream.video_layers.len() <= 1, true, "only the highest layer");
        prop_assert_eq!(layer, expected.layer);
        prop_assert_eq!(coalesced.score, expected.score);
        prop_assert_eq!(coalesced.min_score, expected.min_score);
        prop_assert_eq!(coalesced.median_score, expected.median_score);
        prop_assert_eq!(&coalesced.mime, &expected.mime, "last sample's mime");
        prop_assert_eq!(coalesced.samples as usize, samples.len());
        prop_assert_eq!(coalesced.invalid_samples as usize, samples.iter().filter(|s| !is_valid_sample(s)).count());
    }

    #[test]
    fn scores_are_bounded_by_their_minimum_and_maximum(scores in prop::collection::vec(0.01f32..5.0, 1..40)) {
        let samples: Vec<lk::AnalyticsStat> = scores.iter().map(|&score| lk::AnalyticsStat { score, ..Default::default() }).collect();
        let coalesced = fold(&samples);
        let max = scores.iter().copied().fold(f32::MIN, f32::max);
        prop_assert!(coalesced.min_score <= coalesced.median_score && coalesced.median_score <= max);
        prop_assert!(coalesced.min_score <= coalesced.score + 1e-4 && coalesced.score <= max + 1e-4);
    }
}

#[test]
fn a_stat_is_produced_even_when_every_sample_is_invalid() {
    let invalid = lk::AnalyticsStat {
        streams: vec![lk::AnalyticsStream {
            primary_packets: u32::MAX,
            primary_bytes: 10,
            ..Default::default()
        }],
        mime: "video/VP8".into(),
        score: 4.0,
        ..Default::default()
    };
    let coalesced = fold(&[invalid]);
    assert_eq!(coalesced.samples, 1);
    assert_eq!(coalesced.invalid_samples, 1);
    assert_eq!(coalesced.stream().primary_bytes, 0);
    assert_eq!(coalesced.score, 0.0, "the invalid sample's score is skipped too");
    assert_eq!(coalesced.mime, "video/VP8");
    assert!(coalesced.window.is_none());
}

#[test]
fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
    let samples: Vec<lk::AnalyticsStat> = [4.0f32, 1.0, 0.0, 3.0, 2.0]
        .iter()
        .map(|&score| lk::AnalyticsStat { score, ..Default::default() })
        .collect();
    let coalesced = fold(&samples);
    assert_eq!((coalesced.score, coalesced.min_score, coalesced.median_score), (2.5, 1.0, 2.5));
}

#[test]
fn audio_windows_carry_the_e_model_mos_of_their_loss_jitter_rtt_and_codec() {
    let audio = |mime: &str, packets: u32, lost: u32, jitter_us: u32, rtt_ms: u32| {
        fold(&[lk::AnalyticsStat {
            mime: mime.into(),
            streams: vec![lk::AnalyticsStream {
                primary_packets: packets,
                primary_bytes: u64::from(packets) * 100,
                packets_lost: lost,
                jitter: jitter_us,
                rtt: rtt_ms,
                ..Default::default()
            }],
            ..Default::default()
        }])
        .mos
    };
    use crate::quality::mos::{Codec, Conditions, estimate};
    // The window's figures, as the E-model takes them: loss of packets expected, half the RTT
    // one way, jitter in milliseconds.
    let expected = estimate(&Codec::OPUS, &Conditions::from_rtt(200.0, 5.0, 20.0)).mos;
    assert_eq!(audio("audio/opus", 950, 50, 20_000, 200), Some(expected));
    let clean = audio("audio/opus", 1000, 0, 0, 0).expect("audio");
    assert!(clean > 4.3 && clean <= 4.5, "{clean}");
    let pcmu = estimate(&Codec::G711_PLC, &Conditions::from_rtt(0.0, 10.0, 0.0)).mos;
    assert_eq!(audio("audio/PCMU", 900, 100, 0, 0), Some(pcmu));
    assert_eq!(audio("audio/red", 1000, 0, 0, 0), Some(clean), "unknown audio codecs as Opus");
    assert_eq!(audio("video/VP8", 1000, 0, 0, 0), None);
    assert_eq!(audio("audio/opus", 0, 0, 0, 0), None, "no packets, no estimate");
}
