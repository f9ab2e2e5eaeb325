//! `POST /v1/telemetry` with a JSON `TelemetryBatch`: content type, gzip (compressed here with a
//! decompressed-size cap near the body's size, or fuzzed gzip as it is), the call cap, decoding
//! per call, conversion and application to a core. See `rtc_telemetry_fuzz::ingest` for the
//! input's layout and the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry_server::ingest::decode::Format;

fuzz_target!(|input: &[u8]| rtc_telemetry_fuzz::ingest(Format::Json, input));
