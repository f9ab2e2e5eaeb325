//! Property tests through the service: across any interleaving of samples and flushes, every
//! valid sample is counted in exactly one flushed window, and invalid ones in none.

use proptest::prelude::*;
use telemetry_core::proto as lk;
use telemetry_core::{DEFAULT_GUARD, Direction, StatsKey};

use crate::harness::{Harness, participant, room};

#[derive(Clone, Debug)]
enum Step {
    Sample { track: usize, upstream: bool, bytes: u64, packets: u32, lost: u32, invalid: bool },
    Flush,
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..3, any::<bool>(), 0u64..1_000_000, 0u32..1000, 0u32..50, prop::bool::weighted(0.1))
            .prop_map(|(track, upstream, bytes, packets, lost, invalid)| Step::Sample { track, upstream, bytes, packets, lost, invalid }),
        1 => Just(Step::Flush),
        2 => (1u64..10_000).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn nothing_is_double_counted_or_lost_across_flushes(steps in prop::collection::vec(step(), 1..200)) {
        let harness = Harness::new();
        harness.service.participant_joined(room(), participant("PA_1"), None, None, true, DEFAULT_GUARD);
        let mut expected = std::collections::HashMap::<(usize, bool), (u64, u64, u64)>::new();
        let mut flushed = std::collections::HashMap::<(usize, bool), (u64, u64, u64)>::new();
        let mut absorb = |batches: Vec<telemetry_core::StatsBatch>| {
            for batch in batches {
                for stat in batch.stats {
                    let track: usize = stat.track_id.trim_start_matches("TR_").parse().expect("track index");
                    let entry = flushed.entry((track, stat.direction == Direction::Upstream)).or_default();
                    entry.0 += stat.coalesced.totals.primary_bytes;
                    entry.1 += stat.coalesced.totals.primary_packets;
                    entry.2 += stat.coalesced.totals.packets_lost;
                }
            }
        };
        for step in steps {
            match step {
                Step::Sample { track, upstream, bytes, packets, lost, invalid } => {
                    let direction = if upstream { Direction::Upstream } else { Direction::Downstream };
                    let key = StatsKey::for_data("", direction, "PA_1", format!("TR_{track}"));
                    let stream = lk::AnalyticsStream {
                        primary_bytes: bytes,
                        primary_packets: packets,
                        packets_lost: lost,
                        nacks: if invalid { u32::MAX } else { 0 },
                        ..Default::default()
                    };
                    harness.track_stats("RoomSid", &key, lk::AnalyticsStat { streams: vec![stream], ..Default::default() });
                    if !invalid {
                        let entry = expected.entry((track, upstream)).or_default();
                        entry.0 += bytes;
                        entry.1 += u64::from(packets);
                        entry.2 += u64::from(lost);
                    }
                }
                Step::Flush => absorb(harness.flush()),
                Step::Advance(millis) => harness.clock.advance_millis(millis as i64),
            }
        }
        absorb(harness.flush());
        flushed.retain(|_, totals| *totals != (0, 0, 0));
        expected.retain(|_, totals| *totals != (0, 0, 0));
        prop_assert_eq!(flushed, expected);
    }
}
