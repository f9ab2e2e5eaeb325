//! Unit tests of webhook signing: known-answer vectors computed outside this code, round trips,
//! every rejection, and cross-checks against LiveKit's Rust SDK in both directions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;

use super::*;

const KEY: &str = "devkey";
const SECRET: &str = "secret";
/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;
const BODY: &[u8] =
    br#"{"event":"room_started","room":{"sid":"RM_1","name":"demo"},"id":"EV_1","createdAt":"1700000000"}"#;

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn sign() -> String {
    livekit_authorization(KEY, SECRET, BODY, NOW).expect("signs")
}

fn verify(authorization: &str, now: i64) -> Result<(), VerifyError> {
    verify_livekit(KEY, SECRET, BODY, authorization, now, LIVEKIT_LEEWAY_SECS)
}

/// A token with any header and claims, correctly signed with `secret`.
fn forge(secret: &str, header: &str, claims: &str) -> String {
    let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
    let mac = hmac_sha256(secret.as_bytes(), &[signed.as_bytes()]);
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn segment_json(token: &str, index: usize) -> serde_json::Value {
    let segment = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("json")
}

#[test]
fn livekit_token_matches_an_independently_computed_vector() {
    // Computed with Python's hmac, hashlib and base64 (not with this code):
    //   header = b'{"alg":"HS256","typ":"JWT"}'
    //   claims = b'{"iss":"devkey","nbf":1700000000,"iat":1700000000,"exp":1700000300,
    //              "sha256":"J7IQVCBvA6heEtwS3vUUtsvFqdcZnzk1DIU8/OSIR+A="}'  (one line)
    //   b64u(header) + "." + b64u(claims) + "." + b64u(hmac(b"secret", signing_input, sha256))
    assert_eq!(body_sha256_base64(BODY), "J7IQVCBvA6heEtwS3vUUtsvFqdcZnzk1DIU8/OSIR+A=");
    assert_eq!(
        sign(),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9\
         .eyJpc3MiOiJkZXZrZXkiLCJuYmYiOjE3MDAwMDAwMDAsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAwMzAwLCJzaGEyNTYiOiJKN0lRVkNCdkE2aGVFdHdTM3ZVVXRzdkZxZGNabnprMURJVTgvT1NJUitBPSJ9\
         .1dbau_xoCRDPc-NJfRnj5qrR8fHXzDcrZaFobFbnaRo"
    );
}

#[test]
fn livekit_token_has_livekit_header_and_claims() {
    let token = sign();
    assert_eq!(segment_json(&token, 0), serde_json::json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(
        segment_json(&token, 1),
        serde_json::json!({
            "iss": KEY,
            "nbf": NOW,
            "iat": NOW,
            "exp": NOW + 300,
            "sha256": body_sha256_base64(BODY),
        })
    );
    assert!(!token.contains('='), "segments are unpadded base64url");
    assert_eq!(body_sha256_base64(b"").len(), 44, "padded standard base64 of 32 bytes");
    assert_eq!(body_sha256_base64(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

#[test]
fn an_api_key_that_needs_json_escaping_stays_one_string() {
    let key = r#"key"with\quotes"#;
    let token = livekit_authorization(key, SECRET, BODY, NOW).expect("signs");
    assert_eq!(segment_json(&token, 1)["iss"], key);
    verify_livekit(key, SECRET, BODY, &token, NOW, 0).expect("verifies");
}

#[test]
fn empty_key_or_secret_cannot_sign() {
    assert_eq!(livekit_authorization("", SECRET, BODY, NOW), Err(SigningError::EmptyApiKey));
    assert_eq!(livekit_authorization(KEY, "", BODY, NOW), Err(SigningError::EmptyApiSecret));
}

#[test]
fn empty_key_or_secret_cannot_verify() {
    assert_eq!(
        verify_livekit("", SECRET, BODY, &sign(), NOW, 60),
        Err(VerifyError::Secret(SigningError::EmptyApiKey))
    );
    let forged = forge("", r#"{"alg":"HS256"}"#, r#"{"iss":"devkey","exp":1700000300}"#);
    assert_eq!(
        verify_livekit(KEY, "", BODY, &forged, NOW, 60),
        Err(VerifyError::Secret(SigningError::EmptyApiSecret))
    );
}

#[test]
fn livekit_round_trip() {
    verify(&sign(), NOW).expect("valid at issue time");
    verify(&sign(), NOW + 299).expect("valid within the ttl");
    verify_livekit(
        KEY,
        SECRET,
        b"",
        &livekit_authorization(KEY, SECRET, b"", NOW).unwrap(),
        NOW,
        0,
    )
    .expect("an empty body signs too");
}

#[test]
fn tampered_body_is_rejected() {
    let tampered = String::from_utf8(BODY.to_vec()).unwrap().replace("demo", "demO");
    assert_eq!(
        verify_livekit(KEY, SECRET, tampered.as_bytes(), &sign(), NOW, LIVEKIT_LEEWAY_SECS),
        Err(VerifyError::ChecksumMismatch)
    );
}

#[test]
fn tampered_token_is_rejected() {
    let token = sign();
    let (signed, _) = token.rsplit_once('.').unwrap();
    let other_claims = livekit_authorization(KEY, SECRET, b"other", NOW).unwrap();
    let other_claims = other_claims.split('.').nth(1).unwrap();
    let (header, _) = signed.split_once('.').unwrap();
    let swapped = format!("{header}.{other_claims}.{}", token.rsplit('.').next().unwrap());
    assert_eq!(verify(&swapped, NOW), Err(VerifyError::BadSignature));
}

#[test]
fn wrong_secret_is_rejected() {
    let token = livekit_authorization(KEY, "another-secret", BODY, NOW).unwrap();
    assert_eq!(verify(&token, NOW), Err(VerifyError::BadSignature));
}

#[test]
fn wrong_key_is_rejected() {
    let token = livekit_authorization("otherkey", SECRET, BODY, NOW).unwrap();
    assert_eq!(verify(&token, NOW), Err(VerifyError::WrongIssuer));
}

#[test]
fn expired_token_is_rejected_beyond_the_leeway() {
    let token = sign();
    let exp = NOW + LIVEKIT_TOKEN_TTL_SECS;
    verify(&token, exp + LIVEKIT_LEEWAY_SECS - 1).expect("within the leeway");
    assert_eq!(
        verify(&token, exp + LIVEKIT_LEEWAY_SECS),
        Err(VerifyError::Expired { exp, now: exp + LIVEKIT_LEEWAY_SECS, leeway: 60 })
    );
    assert!(matches!(
        verify_livekit(KEY, SECRET, BODY, &token, exp, 0),
        Err(VerifyError::Expired { .. })
    ));
}

#[test]
fn not_yet_valid_token_is_rejected_beyond_the_leeway() {
    let token = sign();
    verify(&token, NOW - LIVEKIT_LEEWAY_SECS).expect("within the leeway");
    assert_eq!(
        verify(&token, NOW - LIVEKIT_LEEWAY_SECS - 1),
        Err(VerifyError::NotYetValid { nbf: NOW, now: NOW - 61, leeway: 60 })
    );
}

#[test]
fn token_without_exp_is_rejected() {
    let sha = body_sha256_base64(BODY);
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let without_exp = forge(SECRET, header, &format!(r#"{{"iss":"{KEY}","sha256":"{sha}"}}"#));
    assert_eq!(verify(&without_exp, NOW), Err(VerifyError::MissingExpiry));
    let text_exp =
        forge(SECRET, header, &format!(r#"{{"iss":"{KEY}","exp":"soon","sha256":"{sha}"}}"#));
    assert_eq!(verify(&text_exp, NOW), Err(VerifyError::MissingExpiry));
    let minimal = forge(
        SECRET,
        r#"{"alg":"HS256"}"#,
        &format!(r#"{{"iss":"{KEY}","exp":{},"sha256":"{sha}"}}"#, NOW + 1),
    );
    verify(&minimal, NOW).expect("exp alone suffices, no nbf, no typ (as Node's SDK signs)");
}

#[test]
fn token_without_checksum_is_rejected() {
    let header = r#"{"alg":"HS256","typ":"JWT"}"#;
    let token = forge(SECRET, header, &format!(r#"{{"iss":"{KEY}","exp":{}}}"#, NOW + 300));
    assert_eq!(verify(&token, NOW), Err(VerifyError::MissingChecksum));
}

#[test]
fn bearer_prefix_is_rejected() {
    assert_eq!(verify(&format!("Bearer {}", sign()), NOW), Err(VerifyError::BearerPrefix));
    assert_eq!(verify(&format!("bearer {}", sign()), NOW), Err(VerifyError::BearerPrefix));
}

#[test]
fn other_algorithms_and_malformed_tokens_are_rejected() {
    let sha = body_sha256_base64(BODY);
    let claims = format!(r#"{{"iss":"{KEY}","exp":{},"sha256":"{sha}"}}"#, NOW + 300);
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(&claims)
    );
    assert_eq!(verify(&none, NOW), Err(VerifyError::UnsupportedAlgorithm("none".into())));
    let hs512 = forge(SECRET, r#"{"alg":"HS512","typ":"JWT"}"#, &claims);
    assert_eq!(verify(&hs512, NOW), Err(VerifyError::UnsupportedAlgorithm("HS512".into())));

    assert_eq!(verify("", NOW), Err(VerifyError::MissingAuthorization));
    for malformed in ["a.b", "a.b.c.d", "!!.b.c", "e30.!!.c"] {
        assert!(
            matches!(verify(malformed, NOW), Err(VerifyError::MalformedToken(_))),
            "{malformed}"
        );
    }
    let token = sign();
    let padded = format!("{token}=");
    assert!(matches!(verify(&padded, NOW), Err(VerifyError::MalformedToken(_))));
}

#[test]
fn constant_time_eq_compares_bytes() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

#[test]
fn errors_read_well() {
    assert_eq!(
        SigningError::MissingSecretPrefix.to_string(),
        "the standard webhooks secret does not start with `whsec_`"
    );
    assert_eq!(
        VerifyError::Expired { exp: 1, now: 2, leeway: 0 }.to_string(),
        "the token expired at 1 (now 2, leeway 0 s)"
    );
}

// --- Standard Webhooks ---

/// The vector of the Standard Webhooks reference libraries (standard-webhooks/standard-webhooks,
/// `libraries/python/tests/test_webhooks.py`, `test_sign_function`; the same in every library),
/// also recomputed here with Python's hmac and base64.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SPEC_TIMESTAMP: i64 = 1_614_265_330;
const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

fn spec_headers() -> StandardHeaders {
    standard_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY).expect("signs")
}

fn verify_spec(headers: &StandardHeaders, body: &[u8], now: i64) -> Result<(), VerifyError> {
    verify_standard(SPEC_SECRET, headers, body, now, STANDARD_DEFAULT_TOLERANCE_SECS)
}

#[test]
fn standard_signature_matches_the_specification_vector() {
    let headers = spec_headers();
    assert_eq!(
        headers,
        StandardHeaders {
            id: SPEC_ID.into(),
            timestamp: "1614265330".into(),
            signature: SPEC_SIGNATURE.into(),
        }
    );
    assert_eq!(
        headers.pairs(),
        [
            ("webhook-id", SPEC_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SPEC_SIGNATURE)
        ]
    );
}

#[test]
fn standard_round_trip_within_the_tolerance() {
    let headers = spec_headers();
    verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP).expect("now");
    verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP + 300).expect("5 min later");
    verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP - 300).expect("5 min earlier");
    assert_eq!(
        verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP + 301),
        Err(VerifyError::TimestampTooOld)
    );
    assert_eq!(
        verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP - 301),
        Err(VerifyError::TimestampTooNew)
    );
}

#[test]
fn standard_rejects_tampered_body_id_timestamp_and_wrong_secret() {
    let headers = spec_headers();
    assert_eq!(
        verify_spec(&headers, br#"{"test": 2432232315}"#, SPEC_TIMESTAMP),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_id = StandardHeaders { id: "msg_other".into(), ..headers.clone() };
    assert_eq!(
        verify_spec(&other_id, SPEC_BODY, SPEC_TIMESTAMP),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_time = StandardHeaders { timestamp: "1614265331".into(), ..headers.clone() };
    assert_eq!(
        verify_spec(&other_time, SPEC_BODY, SPEC_TIMESTAMP),
        Err(VerifyError::NoMatchingSignature)
    );
    let other_secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(
        verify_standard(other_secret, &headers, SPEC_BODY, SPEC_TIMESTAMP, 300),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn standard_accepts_any_of_several_signatures() {
    let headers = StandardHeaders {
        signature: format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,{0} garbage v1,!!! {SPEC_SIGNATURE}",
            &SPEC_SIGNATURE[3..]
        ),
        ..spec_headers()
    };
    verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP).expect("the last one matches");
    let only_v2 =
        StandardHeaders { signature: format!("v2,{}", &SPEC_SIGNATURE[3..]), ..spec_headers() };
    assert_eq!(
        verify_spec(&only_v2, SPEC_BODY, SPEC_TIMESTAMP),
        Err(VerifyError::NoMatchingSignature),
        "only v1 counts"
    );
}

#[test]
fn standard_rejects_missing_and_invalid_headers() {
    for (index, name) in ["webhook-id", "webhook-timestamp", "webhook-signature"].iter().enumerate()
    {
        let mut headers = spec_headers();
        [&mut headers.id, &mut headers.timestamp, &mut headers.signature][index].clear();
        assert_eq!(
            verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP),
            Err(VerifyError::MissingHeader(name))
        );
    }
    let headers = StandardHeaders { timestamp: "1614265330.5".into(), ..spec_headers() };
    assert_eq!(
        verify_spec(&headers, SPEC_BODY, SPEC_TIMESTAMP),
        Err(VerifyError::InvalidTimestamp)
    );
}

#[test]
fn standard_secrets_need_the_prefix_and_valid_base64() {
    let sign = |secret| standard_headers(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
    assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Err(SigningError::MissingSecretPrefix));
    assert!(matches!(sign("whsec_not base64!"), Err(SigningError::InvalidSecretBase64(_))));
    assert!(
        sign("whsec_not base64!")
            .unwrap_err()
            .to_string()
            .starts_with("the standard webhooks secret is not valid base64 after `whsec_`: ")
    );
    assert_eq!(sign("whsec_"), Err(SigningError::EmptySecret));
    // Padding is optional, as in the reference libraries: `AQI` and `AQI=` are the same key.
    assert!(sign("whsec_AQI").is_ok() && sign("whsec_AQI=").is_ok());
    assert_eq!(sign("whsec_AQI").unwrap(), sign("whsec_AQI=").unwrap());
    assert_eq!(
        verify_standard("secret", &spec_headers(), SPEC_BODY, SPEC_TIMESTAMP, 300),
        Err(VerifyError::Secret(SigningError::MissingSecretPrefix))
    );
}

#[test]
fn standard_message_ids_must_be_header_values() {
    for id in ["", "msg\n1", "msg\r"] {
        assert_eq!(
            standard_headers(SPEC_SECRET, id, SPEC_TIMESTAMP, SPEC_BODY),
            Err(SigningError::InvalidMessageId),
            "{id:?}"
        );
    }
}

// --- Cross-checks with LiveKit's Rust SDK (livekit-api) ---

const LONG_SECRET: &str = "secret-that-is-long-enough-0123456789";

#[test]
fn tokens_signed_by_livekit_api_verify_here() {
    let sha = body_sha256_base64(BODY);
    let token = livekit_api::access_token::AccessToken::with_api_key(KEY, LONG_SECRET)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&sha)
        .to_jwt()
        .expect("livekit-api signs");
    verify_livekit(KEY, LONG_SECRET, BODY, &token, now_secs(), LIVEKIT_LEEWAY_SECS)
        .expect("our verifier accepts LiveKit's token");
    assert_eq!(
        verify_livekit(KEY, LONG_SECRET, b"{}", &token, now_secs(), LIVEKIT_LEEWAY_SECS),
        Err(VerifyError::ChecksumMismatch)
    );
}

#[test]
fn our_tokens_verify_with_livekit_api() {
    let receiver = livekit_api::webhooks::WebhookReceiver::new(
        livekit_api::access_token::TokenVerifier::with_api_key(KEY, LONG_SECRET),
    );
    let body = std::str::from_utf8(BODY).unwrap();
    let token = livekit_authorization(KEY, LONG_SECRET, BODY, now_secs()).unwrap();
    let event = receiver.receive(body, &token).expect("livekit-api accepts our token");
    assert_eq!(event.event, "room_started");
    assert_eq!(event.id, "EV_1");
    assert_eq!(event.room.expect("room").name, "demo");

    assert!(receiver.receive(&body.replace("demo", "demO"), &token).is_err(), "tampered body");
    let wrong =
        livekit_authorization(KEY, "another-secret-long-enough-0123456789", BODY, now_secs())
            .unwrap();
    assert!(receiver.receive(body, &wrong).is_err(), "wrong secret");
    let expired = livekit_authorization(KEY, LONG_SECRET, BODY, now_secs() - 600).unwrap();
    assert!(receiver.receive(body, &expired).is_err(), "expired");
}
