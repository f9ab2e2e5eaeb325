//! `Idempotency-Key` parsing and the recent keys of an instance without the cluster.

use axum::http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::error::ErrorCode;
use crate::ingest::idempotency::{Begin, HEADER, MAX_KEYS, RecentKeys, WINDOW, key};

fn headers(values: &[&[u8]]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(HEADER, HeaderValue::from_bytes(value).expect("a header value"));
    }
    headers
}

#[test]
fn keys_are_one_to_200_printable_characters_and_bad_ones_name_the_header() {
    assert_eq!(key(&HeaderMap::new()).expect("no key"), None);
    assert_eq!(key(&headers(&[b"req 1/a"])).expect("a key").as_deref(), Some("req 1/a"));
    assert!(key(&headers(&[&[b'k'; 200]])).is_ok());
    for bad in [&headers(&[&[b'k'; 201]]), &headers(&[b"tab\there"]), &headers(&[b"a", b"b"])] {
        let error = key(bad).expect_err("refused");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert!(error.message.contains("`Idempotency-Key`"), "{}", error.message);
    }
}

#[test]
fn a_repeat_gets_the_first_answer_per_api_key_within_the_window() {
    let recent = RecentKeys::<u32>::default();
    let start = Instant::now();
    assert_eq!(recent.begin("sfu", "k", start).expect("first"), Begin::First);
    // In progress: a second request with the key waits for the first to finish.
    assert_eq!(recent.begin("sfu", "k", start).expect_err("busy").code, ErrorCode::Conflict);
    // Another API key's same key is another request.
    assert_eq!(recent.begin("other", "k", start).expect("first"), Begin::First);
    recent.finish("sfu", "k", Some(7));
    assert_eq!(recent.begin("sfu", "k", start + WINDOW / 2).expect("repeat"), Begin::Repeat(7));
    assert_eq!(recent.begin("sfu", "k", start + WINDOW).expect("expired"), Begin::First);
}

#[test]
fn a_failed_request_leaves_no_trace_and_the_map_is_bounded() {
    let recent = RecentKeys::<u32>::default();
    let now = Instant::now();
    assert_eq!(recent.begin("sfu", "k", now).expect("first"), Begin::First);
    recent.finish("sfu", "k", None);
    assert_eq!(recent.begin("sfu", "k", now).expect("again"), Begin::First);
    recent.finish("sfu", "k", Some(1));
    for index in 0..MAX_KEYS {
        let key = format!("k{index}");
        assert_eq!(recent.begin("sfu", &key, now).expect("first"), Begin::First);
        recent.finish("sfu", &key, Some(2));
    }
    // The oldest key was forgotten to make room.
    assert_eq!(recent.begin("sfu", "k", now).expect("forgotten"), Begin::First);
}
