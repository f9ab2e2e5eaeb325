//! API authentication: LiveKit-style access tokens (HS256 JWTs whose `iss` is an API key, signed
//! with that key's secret, `exp` required, `nbf` honoured, 60 s leeway), and the roles each
//! configured key grants. A LiveKit SDK's `AccessToken` can mint them.
//!
//! A token's remaining lifetime is bounded (`max_token_lifetime`): one whose `exp` is further
//! than that from now, beyond the leeway, is refused. The bound is measured from now, not from
//! `iat`: LiveKit's tokens carry `nbf` and `exp` but need not carry `iat`, and what a leaked
//! token is worth is how long it stays valid from the moment it is used, whatever it claims about
//! its own minting.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{KeyConfig, Role};
use crate::error::{ApiError, ErrorCode};

/// The leeway on `exp` and `nbf`, as LiveKit's verifier.
pub const LEEWAY_SECS: u64 = 60;

/// Checks tokens against the configured keys.
pub struct Authenticator {
    keys: HashMap<String, (DecodingKey, Vec<Role>)>,
    /// The keys' secrets, for `Basic` credentials (Janus's event handler sends a key and its
    /// secret, and can mint no token).
    secrets: HashMap<String, String>,
    max_lifetime: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

/// Who made a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The API key.
    pub key: String,
    /// Its roles.
    pub roles: Vec<Role>,
}

impl Principal {
    /// Fails with 403 unless the principal has `role`.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` naming the missing role.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("API key `{}` does not have the `{}` role", self.key, role.as_str()),
            ))
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    /// Checked for presence by the verifier; here only its distance from now.
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

impl Authenticator {
    /// Builds the authenticator of `keys`, refusing tokens that stay valid longer than
    /// `max_lifetime` from now.
    pub fn new(keys: &[KeyConfig], max_lifetime: Duration) -> Self {
        Self {
            max_lifetime,
            secrets: keys.iter().map(|key| (key.key.clone(), key.secret.clone())).collect(),
            keys: keys
                .iter()
                .map(|key| {
                    (
                        key.key.clone(),
                        (DecodingKey::from_secret(key.secret.as_bytes()), key.roles.clone()),
                    )
                })
                .collect(),
        }
    }

    /// Authenticates the value of an `Authorization` header (`Bearer <token>`).
    ///
    /// # Errors
    ///
    /// `Unauthenticated`, saying what is wrong with the header or token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let header = authorization
            .ok_or_else(|| unauthenticated("missing `Authorization: Bearer <token>` header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                unauthenticated("the `Authorization` header must be `Bearer <token>`")
            })?;
        let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|error| unauthenticated(format!("the token is not a valid JWT: {error}")))?;
        let (key, roles) = self.keys.get(&claims.iss).ok_or_else(|| {
            unauthenticated(format!("unknown API key `{}` in the token's `iss`", claims.iss))
        })?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&claims.iss]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            unauthenticated(match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".to_owned(),
                ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256".to_owned(),
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token has no `{claim}` claim")
                }
                _ => format!("the token does not verify: {error}"),
            })
        })?;
        self.check_lifetime(claims.exp.as_ref(), now_secs())?;
        Ok(Principal { key: claims.iss, roles: roles.clone() })
    }

    /// Authenticates the value of an `Authorization` header that may also be `Basic
    /// <base64 of key:secret>`: what Janus's sample event handler sends with `backend_user` (an
    /// API key) and `backend_pwd` (its secret). A `Bearer` token is checked as by
    /// [`Authenticator::authenticate`].
    ///
    /// # Errors
    ///
    /// `Unauthenticated`, saying what is wrong with the header or the credentials.
    pub fn authenticate_basic_or_bearer(
        &self,
        authorization: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let header = authorization.ok_or_else(|| {
            unauthenticated(
                "missing `Authorization` header: send `Basic` credentials (an API key and its secret: Janus's `backend_user` and `backend_pwd`) or `Bearer <token>`",
            )
        })?;
        let Some(encoded) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic "))
        else {
            return self.authenticate(Some(header));
        };
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                unauthenticated(
                    "the `Authorization: Basic` credentials are not base64 of UTF-8 text",
                )
            })?;
        let (key, secret) = decoded.split_once(':').ok_or_else(|| {
            unauthenticated("the `Authorization: Basic` credentials must be `<API key>:<secret>`")
        })?;
        let expected = self
            .secrets
            .get(key)
            .ok_or_else(|| unauthenticated(format!("unknown API key `{key}`")))?;
        if !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
            return Err(unauthenticated(format!("wrong secret for API key `{key}`")));
        }
        let (_, roles) = self.keys.get(key).expect("every key has a secret and roles");
        Ok(Principal { key: key.to_owned(), roles: roles.clone() })
    }

    /// Refuses a token whose `exp` (seconds since the Unix epoch) is further than the maximum
    /// lifetime (and the leeway) from `now`.
    fn check_lifetime(&self, exp: Option<&serde_json::Value>, now: u64) -> Result<(), ApiError> {
        let Some(exp) = exp else {
            return Err(unauthenticated("the token has no `exp` claim"));
        };
        let exp = exp
            .as_f64()
            .filter(|exp| exp.is_finite())
            .ok_or_else(|| unauthenticated("the token's `exp` is not a number of seconds"))?;
        let max = self.max_lifetime.as_secs();
        let remaining = exp - now as f64;
        if remaining > (max + LEEWAY_SECS) as f64 {
            return Err(unauthenticated(format!(
                "the token is valid for {} more, longer than the {} a token may be valid for (`max_token_lifetime`): mint tokens that expire sooner",
                describe_secs(remaining),
                humantime::format_duration(self.max_lifetime),
            )));
        }
        Ok(())
    }
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != given.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(!*byte);
    }
    difference == 0
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default()
}

/// Seconds as a duration a person reads ("7days 2h"), or as a number when absurdly large.
fn describe_secs(secs: f64) -> String {
    if secs < 1e12 {
        humantime::format_duration(Duration::from_secs(secs as u64)).to_string()
    } else {
        format!("{secs:e} s")
    }
}

/// Mints a token the way LiveKit's `AccessToken` does, for the simulator, the demo and tests.
///
/// # Errors
///
/// Fails only if the claims cannot be encoded.
pub fn mint_token(key: &str, secret: &str, valid_for: Duration) -> Result<String, ApiError> {
    let now = now_secs();
    let claims =
        serde_json::json!({ "iss": key, "nbf": now, "exp": now + valid_for.as_secs(), "sub": "" });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|error| ApiError::internal(&error))
}
