//! `POST /v1/ingest/janus`: gzip (compressed here with the decompressed-size cap at its size),
//! the event cap, decoding per event, the checks of `[limits]`, the Janus adapter and the
//! application of its calls to a core. See `rtc_telemetry_fuzz::janus_ingest` for the input's
//! layout and the properties checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| rtc_telemetry_fuzz::janus_ingest(input));
