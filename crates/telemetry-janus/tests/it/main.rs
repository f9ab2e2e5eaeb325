//! The adapter against a real capture (`tests/data/capture-echotest-videoroom.jsonl`: a 30 s
//! EchoTest, then a 30 s VideoRoom call of `probe0` and `probe1`, 641 events from Janus 1.1.2's
//! sample event handler), and property tests on events made from it: reordered, repeated,
//! missing, and a restart of the service at any point.

mod capture;
mod properties;
mod support;
