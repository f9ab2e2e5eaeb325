//! The Janus route's body decoding: the event cap holds for a single event as for an array.

use super::decode_body;

/// The status a refused body gets.
fn refused_status(body: &[u8], max_events: usize) -> u16 {
    decode_body(body, false, 1 << 20, max_events).expect_err("refused").code.http_status().as_u16()
}

#[test]
fn a_body_over_the_event_cap_is_refused_whole_whether_an_array_or_one_event() {
    // The fuzzer found a single event taken under a cap of none.
    assert_eq!(refused_status(b"{}", 0), 413);
    assert_eq!(refused_status(b" [{}, {}]", 1), 413);
    assert_eq!(decode_body(b"{}", false, 1 << 20, 1).expect("one event").len(), 1);
    assert_eq!(decode_body(b"[{}, {}]", false, 1 << 20, 2).expect("two events").len(), 2);
}
