//! What the fuzz targets share: the ingest body path of `POST /v1/telemetry` (content type,
//! gzip, decoding, conversion, application to a core, the store write the pipeline makes of the
//! outputs) with the properties it must keep, the same for `POST /v1/ingest/janus`, and a check
//! of the core's output sequence.
//!
//! Every target calls the service's own functions (`telemetry_server::ingest::http::decode_body`,
//! `telemetry_server::ingest::apply_calls`, `telemetry_server::config::load`, ...), never a copy.

use std::io::Write;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use prost::Message;
use telemetry_core::{
    CoreConfig, ManualClock, Output, OutputReceiver, Sequenced, TelemetryService, UnixMillis,
};
use telemetry_janus::AdapterConfig;
use telemetry_proto::v1;
use telemetry_server::error::ErrorCode;
use telemetry_server::ingest::convert::convert;
use telemetry_server::ingest::decode::{Format, decode_json_call, decode_protobuf_call};
use telemetry_server::ingest::http::{content_encoding_is_gzip, content_format, decode_body};
use telemetry_server::ingest::janus;
use telemetry_server::ingest::validate::Limits;
use telemetry_server::ingest::{MAX_LISTED_REJECTIONS, apply_calls};
use telemetry_server::pipeline::to_write_batch;
use telemetry_server::webhooks::Endpoints;
use telemetry_store::model::{EndpointRecord, EndpointSource, Signing};

/// 2023-11-14T22:13:20Z: the fuzzed core's clock and the ingest's receive time.
pub const T0: UnixMillis = UnixMillis(1_700_000_000_000);

/// The API key calls without a `nodeId` are attributed to.
const KEY: &str = "fuzz-key";

/// A core on a manual clock at [`T0`], with its output receiver.
pub fn core() -> (TelemetryService, OutputReceiver, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let (service, receiver) = TelemetryService::builder(CoreConfig {
        node_id: "fuzz-node".into(),
        // Every node id of an input is welcome: the node limit is tested on its own.
        limits: telemetry_core::CoreLimits { max_nodes: 1 << 20, ..Default::default() },
        ..CoreConfig::default()
    })
    .clock(clock.clone())
    .id_seed(7)
    .build();
    (service, receiver, clock)
}

/// An endpoint that wants every webhook, the opt-in quality ones included, so the pipeline
/// renders each one.
pub fn endpoints() -> Endpoints {
    let endpoints = Endpoints::default();
    endpoints.set(vec![
        EndpointRecord {
            id: "WE_fuzz".into(),
            url: "http://127.0.0.1:9/hook".into(),
            signing: Signing::Livekit,
            api_key: "fuzz-key".into(),
            secret: "fuzz-secret".into(),
            include_events: Vec::new(),
            exclude_events: Vec::new(),
            enabled: true,
            source: EndpointSource::Api,
            created_at: T0,
        },
        EndpointRecord {
            id: "WE_fuzz_quality".into(),
            url: "http://127.0.0.1:9/quality".into(),
            signing: Signing::Livekit,
            api_key: "fuzz-key".into(),
            secret: "fuzz-secret".into(),
            include_events: vec![
                telemetry_core::events::names::QUALITY_DEGRADED.into(),
                telemetry_core::events::names::QUALITY_RECOVERED.into(),
            ],
            exclude_events: Vec::new(),
            enabled: true,
            source: EndpointSource::Api,
            created_at: T0,
        },
    ]);
    endpoints
}

/// Turns outputs into the store write the pipeline makes of them (events, webhooks rendered for
/// `endpoints`, stats windows, node states and rates) and checks it accounts for each of them.
pub fn store(outputs: Vec<Sequenced>, endpoints: &Endpoints) {
    let (mut events, mut webhooks, mut windows, mut workers, mut issues, mut quality) =
        (0, 0, 0, 0, 0, 0);
    for output in &outputs {
        match &output.output {
            Output::Call(call) => {
                events += usize::from(call.event.is_some());
                webhooks += usize::from(call.webhook.is_some());
            }
            Output::Stats(batch) => windows += batch.stats.len(),
            Output::Worker(_) => workers += 1,
            Output::QualityState(_) => quality += 1,
            // A quality change is an event, an issue row and an opt-in webhook.
            Output::Quality(_) => {
                events += 1;
                issues += 1;
                webhooks += 1;
            }
            Output::NodeRooms(_) | Output::NodeRates(_) => {}
        }
    }
    let batch = to_write_batch(outputs, endpoints, 7, T0);
    assert_eq!(batch.events.len(), events, "one record per event");
    // Events whose ids were drawn here are keyed by their outputs' sequence numbers: no two alike.
    let drawn: std::collections::HashSet<&str> = batch
        .events
        .iter()
        .map(|event| event.key.as_str())
        .filter(|key| key.starts_with('r'))
        .collect();
    let calls = batch.events.iter().filter(|event| event.key.starts_with('r')).count();
    assert_eq!(drawn.len(), calls, "distinct keys for drawn ids");
    assert_eq!(batch.webhooks.len(), webhooks, "one message per webhook");
    // So are their webhook messages: a call's by its key, a quality change's by its id.
    let messages: std::collections::HashSet<&str> =
        batch.webhooks.iter().map(|webhook| webhook.message.key.as_str()).collect();
    assert_eq!(messages.len(), webhooks, "distinct keys for webhook messages");
    for webhook in &batch.webhooks {
        let message = &webhook.message;
        let keyed = message.key.starts_with('r') || message.key == message.webhook.id;
        assert!(keyed, "a message keyed by its call or its id: {:?}", message.key);
    }
    assert_eq!(batch.stats.len(), windows, "one record per coalesced stat");
    assert_eq!(batch.workers.len(), workers, "one record per worker state");
    assert_eq!(batch.issues.len(), issues, "one row per quality change");
    assert_eq!(batch.quality.len(), quality, "one record per quality state");
    for window in &batch.stats {
        assert!(window.start <= window.end, "a window ends after it starts: {window:?}");
        assert!(window.avg_bps.is_finite() && window.avg_bps >= 0.0, "{window:?}");
        assert!(window.peak_bps.is_finite() && window.peak_bps >= 0.0, "{window:?}");
    }
}

/// Takes every output waiting and checks that their sequence numbers continue `*last` one by
/// one; returns them.
pub fn drain(
    receiver: &OutputReceiver,
    service: &TelemetryService,
    last: &mut u64,
) -> Vec<Sequenced> {
    let mut outputs = Vec::new();
    receiver.take(usize::MAX, &mut outputs);
    for output in &outputs {
        assert_eq!(output.seq, *last + 1, "output sequence numbers are consecutive");
        *last = output.seq;
    }
    assert_eq!(service.pending_outputs(), 0, "every output was drained");
    assert_eq!(service.last_seq(), *last, "the last sequence number pushed is the last drained");
    outputs
}

/// `Content-Type` spellings of each format the service must accept.
const JSON_TYPES: [&str; 4] = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    " application/json ;x=y",
];
const PROTOBUF_TYPES: [&str; 4] = [
    "application/x-protobuf",
    "application/protobuf",
    "APPLICATION/X-PROTOBUF; proto=rtctelemetry.v1.TelemetryBatch",
    "application/protobuf;",
];
/// `Content-Encoding` spellings meaning gzip.
const GZIP_ENCODINGS: [&str; 4] = ["gzip", "x-gzip", "GZIP", " gzip "];

/// Runs one ingest body of `format` through the service's path.
///
/// The input's first byte chooses the `Content-Type` spelling (bits 0-1) and how gzip is used
/// (bits 2-3: 0 and 1 plain, 2 the rest compressed here and decoded with a decompressed-size
/// cap close to its size, 3 the rest sent as gzip as it is); the second byte the caps (bit 7:
/// the default 10,000 calls, else bits 0-3 calls; bits 4-6 the decompressed cap's offset from
/// the body's size). The rest is the body.
pub fn ingest(format: Format, input: &[u8]) {
    let [flags, caps, body @ ..] = input else { return };
    let types = match format {
        Format::Json => JSON_TYPES,
        Format::Protobuf => PROTOBUF_TYPES,
    };
    let mode = (flags >> 2) & 3;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(types[usize::from(flags & 3)]));
    if mode >= 2 {
        let encoding = GZIP_ENCODINGS[usize::from(flags >> 4 & 3)];
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    assert_eq!(content_format(&headers).expect("a supported content type"), format);
    let gzip = content_encoding_is_gzip(&headers).expect("a supported encoding");
    assert_eq!(gzip, mode >= 2);
    let max_calls = if caps & 0x80 == 0 { 10_000 } else { usize::from(caps & 0x0f) };
    let decoded = match mode {
        0 | 1 => decode_body(format, false, body, 1 << 20, max_calls),
        2 => {
            let cap = (body.len() + usize::from(caps >> 4 & 7)).saturating_sub(4);
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(body).expect("compress in memory");
            let compressed = encoder.finish().expect("compress in memory");
            let decoded = decode_body(format, true, &compressed, cap, max_calls);
            if body.len() > cap {
                let error = decoded.expect_err("a body over the decompressed cap is refused");
                assert_eq!(error.code, ErrorCode::PayloadTooLarge, "{}", error.message);
                return;
            }
            let plain = decode_body(format, false, body, cap, max_calls);
            assert_eq!(
                summary(&decoded),
                summary(&plain),
                "gzip changes nothing once decompressed"
            );
            decoded
        }
        _ => decode_body(format, true, body, 1 << 16, max_calls),
    };
    let Some(calls) = readable(decoded) else { return };
    assert!(calls.len() <= max_calls, "{} calls over the cap of {max_calls}", calls.len());
    check_calls(format, calls);
}

/// A decoding's result with each call encoded: comparable, NaN included.
type Summary = Result<Vec<Result<Vec<u8>, String>>, (ErrorCode, String)>;

/// What a decoding produced, comparable (floats compared by their encoding, so NaN equals NaN).
fn summary(
    decoded: &Result<Vec<Result<v1::TelemetryCall, String>>, telemetry_server::error::ApiError>,
) -> Summary {
    match decoded {
        Ok(calls) => Ok(calls
            .iter()
            .map(|call| call.as_ref().map(Message::encode_to_vec).map_err(Clone::clone))
            .collect()),
        Err(error) => Err((error.code, error.message.clone())),
    }
}

/// On a fresh core, every issue ended was started before, and none is started twice while open.
fn check_issue_changes(outputs: &[Sequenced]) {
    let mut open = std::collections::HashSet::new();
    for output in outputs {
        if let Output::Quality(change) = &output.output {
            let id = &change.issue.id;
            if change.issue.is_ended() {
                assert!(open.remove(id), "issue {id} ended without being started: {outputs:#?}");
            } else {
                assert!(open.insert(id.clone()), "issue {id} started twice: {outputs:#?}");
            }
        }
    }
}

/// Checks decoded calls: each one decoded re-reads as itself, and applying them to a core
/// accepts exactly those that convert (none is shed here), rejects the rest with their index,
/// and produces consecutive outputs.
fn check_calls(format: Format, calls: Vec<Result<v1::TelemetryCall, String>>) {
    let mut converts = Vec::with_capacity(calls.len());
    for call in &calls {
        match call {
            Ok(call) => {
                round_trip(format, call);
                let converted = convert(call.clone(), T0, KEY, &Limits::default());
                if let Err(error) = &converted {
                    assert!(!error.is_empty(), "a conversion error says what is wrong");
                }
                converts.push(converted.is_ok());
            }
            Err(error) => {
                assert!(!error.is_empty(), "a decoding error says what is wrong");
                converts.push(false);
            }
        }
    }
    let (service, receiver, _clock) = core();
    let count = calls.len();
    let outcome = apply_calls(&service, calls, 0, KEY, T0, &Limits::default());
    let expected_rejected: Vec<usize> =
        converts.iter().enumerate().filter(|(_, ok)| !**ok).map(|(index, _)| index).collect();
    assert_eq!(outcome.accepted + outcome.rejected_count, count, "every call is accounted for");
    assert_eq!(
        outcome.rejected_count,
        expected_rejected.len(),
        "exactly the calls that do not convert are rejected"
    );
    assert_eq!(outcome.rejected.len(), expected_rejected.len().min(MAX_LISTED_REJECTIONS));
    for (rejection, index) in outcome.rejected.iter().zip(&expected_rejected) {
        assert_eq!(rejection.index, *index, "rejections are listed in call order with their index");
    }
    let mut last = 0;
    let outputs = drain(&receiver, &service, &mut last);
    assert_eq!(outcome.last_seq.unwrap_or(0), last, "the outcome names the last output");
    let states = outputs.iter().filter(|o| matches!(o.output, Output::Worker(_))).count();
    let changes = outputs.iter().filter(|o| matches!(o.output, Output::Quality(_))).count();
    assert!(
        outputs.len() - states - changes <= count,
        "a call produces at most one output besides its worker's state and the quality changes \
         it causes (a leave or an unpublish may end several issues): {outputs:#?}"
    );
    check_issue_changes(&outputs);
    assert!(states <= count, "a call changes at most one worker");
    let endpoints = endpoints();
    store(outputs, &endpoints);
    service.flush_stats_at(T0.plus_millis(60_000));
    service.drain_node_rates();
    store(drain(&receiver, &service, &mut last), &endpoints);
}

/// An accepted call, written again in its format, decodes to the same call.
fn round_trip(format: Format, call: &v1::TelemetryCall) {
    let encoded = call.encode_to_vec();
    let again = match format {
        Format::Protobuf => decode_protobuf_call(&encoded),
        Format::Json => match serde_json::to_string(call) {
            Ok(text) => decode_json_call(&text),
            // pbjson refuses to write some values it reads (timestamps out of its range).
            Err(_) => return,
        },
    };
    let again = again.unwrap_or_else(|error| panic!("a decoded call re-reads: {error}\n{call:?}"));
    assert_eq!(again.encode_to_vec(), encoded, "a decoded call re-reads as itself");
}

/// The capture of `telemetry-janus`'s tests (Janus 1.1.2's sample event handler, a 30 s EchoTest
/// and a 30 s VideoRoom call of two), one event a line: the Janus targets' event pool and seeds.
pub const JANUS_CAPTURE: &str =
    include_str!("../../crates/telemetry-janus/tests/data/capture-echotest-videoroom.jsonl");

/// Runs one body of `POST /v1/ingest/janus` through the route's path.
///
/// The input's first byte chooses how gzip is used (bit 0: the rest is compressed here and
/// decoded with a decompressed-size cap of its size, and must decode as it does plain) and the
/// event cap (bit 7: the default 10,000 events, else bits 1-4 events); the rest is the body.
/// Checked: a body refused whole is refused as invalid or too large, with a message; otherwise
/// every event is accounted for (accepted, ignored or rejected with its index, in order), a
/// decoding error is a rejection, the outputs of the calls are consecutive and the pipeline's
/// store write accounts for them; the timer's calls later too; every state handed out restores.
pub fn janus_ingest(input: &[u8]) {
    let [flags, body @ ..] = input else { return };
    let max_events = if flags & 0x80 == 0 { 10_000 } else { usize::from(flags >> 1 & 0x0f) };
    let decoded = if flags & 1 == 1 {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(body).expect("compress in memory");
        let compressed = encoder.finish().expect("compress in memory");
        let decoded = janus::decode_body(&compressed, true, body.len(), max_events);
        let plain = janus::decode_body(body, false, body.len(), max_events);
        assert_eq!(
            format!("{decoded:?}"),
            format!("{plain:?}"),
            "gzip changes nothing once decompressed"
        );
        decoded
    } else {
        janus::decode_body(body, false, 1 << 20, max_events)
    };
    let Some(events) = readable(decoded) else { return };
    assert!(events.len() <= max_events);
    let count = events.len();
    let undecodable: Vec<usize> =
        events.iter().enumerate().filter(|(_, event)| event.is_err()).map(|(i, _)| i).collect();
    // Received when the events were made (the capture is from 2026), so that their times pass.
    let received_at = events
        .iter()
        .filter_map(|event| event.as_ref().ok())
        .map(|event| UnixMillis(i64::try_from(event.timestamp / 1000).unwrap_or(i64::MAX)))
        .max()
        .unwrap_or(T0)
        .max(UnixMillis(0));
    let (service, receiver, _clock) = core();
    let endpoints = endpoints();
    let ingest = janus::JanusIngest::new(AdapterConfig::default(), Limits::default());
    let outcome = ingest.apply_events(&service, events, received_at, &Limits::default());
    assert_eq!(
        outcome.accepted + outcome.ignored + outcome.rejected_count,
        count,
        "every event is accounted for"
    );
    assert!(outcome.rejected.len() <= MAX_LISTED_REJECTIONS);
    assert!(outcome.rejected.windows(2).all(|pair| pair[0].index < pair[1].index));
    assert!(outcome.rejected.iter().all(|rejection| rejection.index < count));
    for index in undecodable.iter().filter(|&&index| index < MAX_LISTED_REJECTIONS) {
        assert!(
            outcome.rejected.iter().any(|rejection| rejection.index == *index),
            "an event that does not decode is rejected"
        );
    }
    let mut last = 0;
    let outputs = drain(&receiver, &service, &mut last);
    assert_eq!(outcome.last_seq.unwrap_or(0), last, "the outcome names the last output");
    store(outputs, &endpoints);
    let later = received_at.plus_millis(86_400_000);
    let (seq, snapshots) = ingest.tick(&service, later);
    store(drain(&receiver, &service, &mut last), &endpoints);
    assert_eq!(seq.unwrap_or(last), last);
    for snapshot in outcome.snapshots.iter().chain(&snapshots) {
        telemetry_janus::Adapter::restore(snapshot, AdapterConfig::default(), later)
            .expect("a state the adapter handed out restores");
    }
    service.flush_stats_at(later.plus_millis(60_000));
    store(drain(&receiver, &service, &mut last), &endpoints);
}

/// What a decoded body holds, or `None` for a body refused as a whole, which must be refused
/// as invalid or too large, with a message.
fn readable<T>(decoded: Result<T, telemetry_server::error::ApiError>) -> Option<T> {
    match decoded {
        Ok(decoded) => Some(decoded),
        Err(error) => {
            assert!(
                matches!(error.code, ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge),
                "a body is refused as invalid or too large, not {:?}: {}",
                error.code,
                error.message
            );
            assert!(!error.message.is_empty());
            None
        }
    }
}
