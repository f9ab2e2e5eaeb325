//! LiveKit's `AnalyticsRecorderService` streams: one message of `IngestStats`, `IngestEvents` or
//! `IngestNodeRoomStates` (chosen by the first byte), decoded with prost as tonic's codec does,
//! then turned into the store's records by the functions the gRPC service stores.
//!
//! Checked: every stat and event is stored or dropped with an error naming it; a stats window
//! never ends before it starts and its rates are finite and not negative; a node's room states
//! are stored as JSON that reads back as the same message, or dropped with an error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rtc_telemetry_fuzz::T0;
use telemetry_core::proto as lk;
use telemetry_server::ingest::grpc::{events_batch, node_rooms_batch, stats_batch};
use telemetry_server::ingest::validate::Limits;

fuzz_target!(|input: &[u8]| {
    let [which, message @ ..] = input else { return };
    match which % 3 {
        0 => {
            let Ok(message) = lk::AnalyticsStats::decode(message) else { return };
            let count = message.stats.len();
            let (batch, dropped) = stats_batch(message, &Limits::default(), T0);
            assert_eq!(batch.stats.len() + dropped.len(), count, "each stat stored or dropped");
            assert!(dropped.iter().all(|error| error.starts_with("stats[")), "{dropped:?}");
            for record in &batch.stats {
                assert!(record.start <= record.end, "a window ends after it starts: {record:?}");
                assert_eq!(record.covered_ms, record.end.millis_since(record.start));
                assert!(record.avg_bps.is_finite() && record.avg_bps >= 0.0, "{record:?}");
                assert!(record.peak_bps.is_finite() && record.peak_bps >= 0.0, "{record:?}");
            }
        }
        1 => {
            let Ok(message) = lk::AnalyticsEvents::decode(message) else { return };
            let ids: Vec<String> = message.events.iter().map(|event| event.id.clone()).collect();
            let (batch, dropped) = events_batch(message, &Limits::default(), T0);
            assert_eq!(
                batch.events.len() + dropped.len(),
                ids.len(),
                "each event stored or dropped"
            );
            assert!(dropped.iter().all(|error| error.starts_with("events[")), "{dropped:?}");
            // The stored ones keep their ids and their order.
            let mut remaining = ids.iter();
            for record in &batch.events {
                assert!(remaining.any(|id| *id == record.id), "{} in order", record.id);
            }
        }
        _ => {
            let Ok(message) = lk::AnalyticsNodeRooms::decode(message) else { return };
            let batch = match node_rooms_batch(&message, &Limits::default(), T0) {
                Ok(batch) => batch,
                Err(error) => {
                    assert!(!error.is_empty());
                    return;
                }
            };
            let [record] = batch.node_rooms.as_slice() else {
                panic!("one record per message");
            };
            assert_eq!(record.node_id, message.node_id);
            let back: lk::AnalyticsNodeRooms =
                serde_json::from_str(&record.payload).expect("the stored JSON reads back");
            assert_eq!(
                back.encode_to_vec(),
                message.encode_to_vec(),
                "the stored JSON is the message"
            );
        }
    }
});
