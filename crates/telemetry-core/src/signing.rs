//! Webhook signing: pure functions, no IO, no clock (the caller passes `now`).
//!
//! Two schemes, per endpoint (DESIGN.md, "Webhooks"):
//!
//! - **LiveKit** (reference §3.8): the `Authorization` header carries a bare HS256 JWT (no
//!   `Bearer `) with `iss` = API key, `nbf` = `iat` = now, `exp` = now + 5 min and `sha256` =
//!   padded standard base64 of SHA-256 over the exact body bytes. LiveKit's receivers in Go, Rust,
//!   Python and Node accept it unchanged. [`verify_livekit`] checks a request the way they do
//!   (HS256 only, `iss`, `exp` required, `nbf`, leeway, constant-time checksum compare).
//! - **Standard Webhooks** (<https://www.standardwebhooks.com/>): `webhook-id`,
//!   `webhook-timestamp` and `webhook-signature` = `v1,` + standard base64 of HMAC-SHA256 over
//!   `{id}.{timestamp}.{body}`, keyed with the base64-decoded part of a `whsec_` secret.
//!   [`verify_standard`] accepts any one of several space-separated signatures, within a
//!   tolerance around now.
//!
//! Times are Unix seconds.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How long a LiveKit webhook token is valid: LiveKit's sender uses `SetValidFor(5 * time.Minute)`.
pub const LIVEKIT_TOKEN_TTL_SECS: i64 = 300;

/// The clock leeway LiveKit's Go receiver applies to `exp` and `nbf`.
pub const LIVEKIT_LEEWAY_SECS: i64 = 60;

/// The prefix of a Standard Webhooks secret; the rest is the base64 of the HMAC key.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// The timestamp tolerance of the Standard Webhooks reference libraries: 5 minutes either way.
pub const STANDARD_DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The only signature version of Standard Webhooks' symmetric scheme.
const STANDARD_SIGNATURE_VERSION: &str = "v1";

/// The JWT header LiveKit's Go sender writes, as base64url of `{"alg":"HS256","typ":"JWT"}`.
const JWT_HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Why a payload could not be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The LiveKit API key is empty (LiveKit's `ToJWT` fails with `ErrKeysMissing`).
    #[error("the api key is empty")]
    EmptyApiKey,
    /// The LiveKit API secret is empty (LiveKit's `ToJWT` fails with `ErrKeysMissing`).
    #[error("the api secret is empty")]
    EmptyApiSecret,
    /// A Standard Webhooks secret does not start with `whsec_`.
    #[error("the standard webhooks secret does not start with `whsec_`")]
    MissingSecretPrefix,
    /// The part of a Standard Webhooks secret after `whsec_` is not base64.
    #[error("the standard webhooks secret is not valid base64 after `whsec_`: {0}")]
    InvalidSecretBase64(base64::DecodeError),
    /// The part of a Standard Webhooks secret after `whsec_` decodes to no bytes.
    #[error("the standard webhooks secret is empty after `whsec_`")]
    EmptySecret,
    /// A `webhook-id` is empty or holds a control character (it could not travel as a header).
    #[error("the `webhook-id` is empty or holds a control character")]
    InvalidMessageId,
}

/// Why a signed request was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The `Authorization` value is empty.
    #[error("the authorization header is empty")]
    MissingAuthorization,
    /// The `Authorization` value starts with `Bearer `; LiveKit sends the bare token.
    #[error("the authorization is a bare token, without the `Bearer ` prefix")]
    BearerPrefix,
    /// The token is not three base64url segments with a JSON header and JSON object claims.
    #[error("the token is not a compact jwt: {0}")]
    MalformedToken(&'static str),
    /// The token's `alg` is not `HS256`.
    #[error("the token algorithm `{0}` is not `HS256`")]
    UnsupportedAlgorithm(String),
    /// The token's HMAC does not match (wrong secret, or altered token).
    #[error("the token signature does not match")]
    BadSignature,
    /// The token's `iss` is missing or is not the API key.
    #[error("the token issuer is not the api key")]
    WrongIssuer,
    /// The token has no numeric `exp` claim.
    #[error("the token has no numeric `exp` claim")]
    MissingExpiry,
    /// The token expired more than the leeway ago.
    #[error("the token expired at {exp} (now {now}, leeway {leeway} s)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// The verifier's now.
        now: i64,
        /// The leeway applied.
        leeway: i64,
    },
    /// The token's `nbf` is more than the leeway in the future.
    #[error("the token is not valid before {nbf} (now {now}, leeway {leeway} s)")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: i64,
        /// The verifier's now.
        now: i64,
        /// The leeway applied.
        leeway: i64,
    },
    /// The token's `nbf` is present but not a number.
    #[error("the token `nbf` claim is not a number")]
    InvalidNotBefore,
    /// The token has no string `sha256` claim.
    #[error("the token has no `sha256` claim")]
    MissingChecksum,
    /// The body's SHA-256 is not the token's `sha256` claim.
    #[error("the body does not match the token's `sha256` claim")]
    ChecksumMismatch,
    /// A Standard Webhooks header is empty.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// The `webhook-timestamp` is not an integer number of seconds.
    #[error("the `webhook-timestamp` is not an integer")]
    InvalidTimestamp,
    /// The `webhook-timestamp` is further in the past than the tolerance.
    #[error("the message timestamp is too old")]
    TimestampTooOld,
    /// The `webhook-timestamp` is further in the future than the tolerance.
    #[error("the message timestamp is too new")]
    TimestampTooNew,
    /// No `v1` signature in `webhook-signature` matches.
    #[error("no `v1` signature in `webhook-signature` matches")]
    NoMatchingSignature,
    /// The verifier's own key or secret is unusable: an empty LiveKit key or secret (which would
    /// accept tokens anyone can sign), or a Standard Webhooks secret that is not `whsec_` + base64.
    #[error(transparent)]
    Secret(#[from] SigningError),
}

/// The padded standard base64 of SHA-256 over `body`: the `sha256` claim of a LiveKit webhook
/// token (44 characters; not base64url).
pub fn body_sha256_base64(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` only fails for fixed-size-key MACs.
    let mut mac = <HmacSha256 as hmac::KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Compares two byte strings in time that depends only on their lengths.
///
/// Lengths are not secret here (a checksum or a MAC has a fixed length), so a length mismatch
/// returns at once.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The token LiveKit's webhook sender puts in the `Authorization` header (bare, no `Bearer `),
/// for `body` sent at `now_secs`.
///
/// Header `{"alg":"HS256","typ":"JWT"}`; claims `iss` = `api_key`, `nbf` = `iat` = `now_secs`,
/// `exp` = `now_secs` + [`LIVEKIT_TOKEN_TTL_SECS`], `sha256` = [`body_sha256_base64`]; HMAC-SHA256
/// keyed with the raw bytes of `api_secret`; segments base64url without padding.
///
/// # Errors
///
/// [`SigningError::EmptyApiKey`] or [`SigningError::EmptyApiSecret`], as LiveKit's `ToJWT`.
pub fn livekit_authorization(
    api_key: &str,
    api_secret: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<String, SigningError> {
    if api_key.is_empty() {
        return Err(SigningError::EmptyApiKey);
    }
    if api_secret.is_empty() {
        return Err(SigningError::EmptyApiSecret);
    }
    let exp = now_secs.saturating_add(LIVEKIT_TOKEN_TTL_SECS);
    let issuer = serde_json::Value::String(api_key.to_owned());
    let claims = format!(
        r#"{{"iss":{issuer},"nbf":{now_secs},"iat":{now_secs},"exp":{exp},"sha256":"{}"}}"#,
        body_sha256_base64(body)
    );
    let mut token = format!("{JWT_HEADER_B64}.{}", URL_SAFE_NO_PAD.encode(claims));
    let mac = hmac_sha256(api_secret.as_bytes(), &[token.as_bytes()]);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    Ok(token)
}

fn decode_segment(segment: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| VerifyError::MalformedToken(what))
}

fn numeric_date(value: &serde_json::Value) -> Option<i64> {
    // RFC 7519 allows fractional NumericDates; LiveKit's senders write integers.
    value.as_i64().or_else(|| value.as_f64().map(|seconds| seconds.floor() as i64))
}

/// Verifies a LiveKit webhook request the way LiveKit's receivers do (reference §3.8): the token
/// in `authorization` (bare, no `Bearer `) must be HS256 signed with `api_secret`, issued by
/// `api_key`, carry `exp` (and honour `nbf` when present) with `leeway_secs` of clock skew
/// ([`LIVEKIT_LEEWAY_SECS`] in LiveKit) around `now_secs`, and its `sha256` claim must be the
/// checksum of the exact `body` bytes (compared in constant time). `iat` is not checked, as in
/// LiveKit.
///
/// # Errors
///
/// The first check that failed, as a [`VerifyError`].
pub fn verify_livekit(
    api_key: &str,
    api_secret: &str,
    body: &[u8],
    authorization: &str,
    now_secs: i64,
    leeway_secs: i64,
) -> Result<(), VerifyError> {
    if api_key.is_empty() {
        return Err(SigningError::EmptyApiKey.into());
    }
    if api_secret.is_empty() {
        return Err(SigningError::EmptyApiSecret.into());
    }
    if authorization.is_empty() {
        return Err(VerifyError::MissingAuthorization);
    }
    if authorization.get(..7).is_some_and(|prefix| prefix.eq_ignore_ascii_case("bearer ")) {
        return Err(VerifyError::BearerPrefix);
    }
    let mut segments = authorization.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(VerifyError::MalformedToken("not three segments"));
    };

    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decode_segment(header_b64, "the header is not base64url")?)
            .map_err(|_| VerifyError::MalformedToken("the header is not a json object"))?;
    match header.get("alg").and_then(serde_json::Value::as_str) {
        Some("HS256") => {}
        Some(other) => return Err(VerifyError::UnsupportedAlgorithm(other.to_owned())),
        None => return Err(VerifyError::MalformedToken("the header has no `alg`")),
    }

    let signed = &authorization.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
    let signature = decode_segment(signature, "the signature is not base64url")?;
    hmac_sha256(api_secret.as_bytes(), &[signed])
        .verify_slice(&signature)
        .map_err(|_| VerifyError::BadSignature)?;

    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decode_segment(claims_b64, "the claims are not base64url")?)
            .map_err(|_| VerifyError::MalformedToken("the claims are not a json object"))?;
    if claims.get("iss").and_then(serde_json::Value::as_str) != Some(api_key) {
        return Err(VerifyError::WrongIssuer);
    }
    let leeway = leeway_secs.max(0);
    let exp = claims.get("exp").and_then(numeric_date).ok_or(VerifyError::MissingExpiry)?;
    if now_secs >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired { exp, now: now_secs, leeway });
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(VerifyError::InvalidNotBefore)?;
        if now_secs.saturating_add(leeway) < nbf {
            return Err(VerifyError::NotYetValid { nbf, now: now_secs, leeway });
        }
    }

    let claimed = claims
        .get("sha256")
        .and_then(serde_json::Value::as_str)
        .filter(|sha| !sha.is_empty())
        .ok_or(VerifyError::MissingChecksum)?;
    if !constant_time_eq(claimed.as_bytes(), body_sha256_base64(body).as_bytes()) {
        return Err(VerifyError::ChecksumMismatch);
    }
    Ok(())
}

/// The three Standard Webhooks headers of one request, as their values travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardHeaders {
    /// `webhook-id`: the message id, the same on every retry.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds, as decimal text.
    pub timestamp: String,
    /// `webhook-signature`: one or more space-separated `v1,<base64>` signatures.
    pub signature: String,
}

impl StandardHeaders {
    /// The name of the id header.
    pub const ID: &'static str = "webhook-id";
    /// The name of the timestamp header.
    pub const TIMESTAMP: &'static str = "webhook-timestamp";
    /// The name of the signature header.
    pub const SIGNATURE: &'static str = "webhook-signature";

    /// The headers as `(name, value)` pairs, in the order above.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (Self::ID, self.id.as_str()),
            (Self::TIMESTAMP, self.timestamp.as_str()),
            (Self::SIGNATURE, self.signature.as_str()),
        ]
    }
}

/// The HMAC key of a Standard Webhooks secret: the base64 after `whsec_` (padding optional, as
/// in the reference libraries).
fn standard_key(secret: &str) -> Result<Vec<u8>, SigningError> {
    let encoded =
        secret.strip_prefix(STANDARD_SECRET_PREFIX).ok_or(SigningError::MissingSecretPrefix)?;
    let key =
        STANDARD_PAD_INDIFFERENT.decode(encoded).map_err(SigningError::InvalidSecretBase64)?;
    if key.is_empty() {
        return Err(SigningError::EmptySecret);
    }
    Ok(key)
}

fn standard_mac(key: &[u8], msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    hmac_sha256(key, &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
}

/// The Standard Webhooks headers for `body` sent as message `msg_id` at `timestamp_secs`:
/// `webhook-signature` is `v1,` + standard base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`,
/// keyed with the base64-decoded part of `secret` after `whsec_`.
///
/// # Errors
///
/// A secret without the `whsec_` prefix, with invalid base64 or with an empty key, and an empty
/// `msg_id` or one holding a control character.
pub fn standard_headers(
    secret: &str,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<StandardHeaders, SigningError> {
    let key = standard_key(secret)?;
    if msg_id.is_empty() || msg_id.chars().any(char::is_control) {
        return Err(SigningError::InvalidMessageId);
    }
    let timestamp = timestamp_secs.to_string();
    let mac = standard_mac(&key, msg_id, &timestamp, body);
    let signature =
        format!("{STANDARD_SIGNATURE_VERSION},{}", STANDARD.encode(mac.finalize().into_bytes()));
    Ok(StandardHeaders { id: msg_id.to_owned(), timestamp, signature })
}

/// Verifies a Standard Webhooks request: the headers must all be present, the timestamp within
/// `tolerance_secs` of `now_secs` either way ([`STANDARD_DEFAULT_TOLERANCE_SECS`] in the
/// reference libraries), and one of the space-separated `v1` signatures must match (compared in
/// constant time; other versions and undecodable entries are skipped).
///
/// # Errors
///
/// A missing header, a bad or out-of-tolerance timestamp, no matching signature, or an unusable
/// `secret` ([`VerifyError::Secret`]).
pub fn verify_standard(
    secret: &str,
    headers: &StandardHeaders,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let key = standard_key(secret)?;
    for (name, value) in headers.pairs() {
        if value.is_empty() {
            return Err(VerifyError::MissingHeader(name));
        }
    }
    let timestamp: i64 = headers.timestamp.parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let tolerance = tolerance_secs.max(0);
    if timestamp < now_secs.saturating_sub(tolerance) {
        return Err(VerifyError::TimestampTooOld);
    }
    if timestamp > now_secs.saturating_add(tolerance) {
        return Err(VerifyError::TimestampTooNew);
    }
    let expected =
        standard_mac(&key, &headers.id, &headers.timestamp, body).finalize().into_bytes();
    let matches = headers
        .signature
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == STANDARD_SIGNATURE_VERSION)
        .filter_map(|(_, signature)| STANDARD.decode(signature).ok())
        .fold(false, |found, candidate| found | constant_time_eq(&candidate, &expected));
    if matches { Ok(()) } else { Err(VerifyError::NoMatchingSignature) }
}

#[cfg(test)]
mod tests;
