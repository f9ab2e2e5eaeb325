//! API authentication: LiveKit-style access tokens (HS256 JWTs whose `iss` is an API key, signed
//! with that key's secret, `exp` required, `nbf` honoured, 60 s leeway), and the roles each
//! configured key grants. A LiveKit SDK's `AccessToken` can mint them.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{KeyConfig, Role};
use crate::error::{ApiError, ErrorCode};

/// The leeway on `exp` and `nbf`, as LiveKit's verifier.
pub const LEEWAY_SECS: u64 = 60;

/// Checks tokens against the configured keys.
pub struct Authenticator {
    keys: HashMap<String, (DecodingKey, Vec<Role>)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Authenticator")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
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
}

fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, message)
}

impl Authenticator {
    /// Builds the authenticator of `keys`.
    pub fn new(keys: &[KeyConfig]) -> Self {
        Self {
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
        Ok(Principal { key: claims.iss, roles: roles.clone() })
    }
}

/// Mints a token the way LiveKit's `AccessToken` does, for the simulator, the demo and tests.
///
/// # Errors
///
/// Fails only if the claims cannot be encoded.
pub fn mint_token(
    key: &str,
    secret: &str,
    valid_for: std::time::Duration,
) -> Result<String, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or_default();
    let claims =
        serde_json::json!({ "iss": key, "nbf": now, "exp": now + valid_for.as_secs(), "sub": "" });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|error| ApiError::internal(&error))
}
