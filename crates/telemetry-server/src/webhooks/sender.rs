//! One delivery attempt: the signed POST of a message's exact body to an endpoint, and what came
//! of it. Only a 2xx answer is success.

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};

use crate::webhooks::Endpoint;
use telemetry_store::model::Signing;

/// The `User-Agent` of deliveries.
pub const USER_AGENT_VALUE: &str = concat!("rtc-telemetry/", env!("CARGO_PKG_VERSION"));

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub struct SendResult {
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// What went wrong (`None` for a 2xx answer).
    pub error: Option<String>,
    /// The answer's `Retry-After`, for a 429 or 503.
    pub retry_after: Option<Duration>,
    /// How long the attempt took.
    pub took: Duration,
    /// The kind of result, for metrics: `success`, `http_4xx`, `http_429`, `http_5xx`,
    /// `timeout`, `connect`, `other`.
    pub result: &'static str,
}

impl SendResult {
    /// Whether the attempt delivered.
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }
}

/// POSTs `body` to `endpoint`, signed, within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    message_id: &str,
    body: &str,
    timeout: Duration,
) -> SendResult {
    let started = tokio::time::Instant::now();
    let now_secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let record = &endpoint.record;
    let headers = match endpoint.signing() {
        Signing::Livekit => telemetry_core::signing::livekit_authorization(
            &record.api_key,
            &record.secret,
            body.as_bytes(),
            now_secs,
        )
        .map(|token| {
            vec![
                (AUTHORIZATION.as_str(), token),
                (CONTENT_TYPE.as_str(), "application/webhook+json".to_owned()),
            ]
        }),
        Signing::Standard => telemetry_core::signing::standard_headers(
            &record.secret,
            message_id,
            now_secs,
            body.as_bytes(),
        )
        .map(|headers| {
            vec![
                ("webhook-id", headers.id),
                ("webhook-timestamp", headers.timestamp),
                ("webhook-signature", headers.signature),
                (CONTENT_TYPE.as_str(), "application/json".to_owned()),
            ]
        }),
    };
    let headers = match headers {
        Ok(headers) => headers,
        Err(error) => {
            return SendResult {
                status: None,
                error: Some(format!("cannot sign: {error}")),
                retry_after: None,
                took: started.elapsed(),
                result: "other",
            };
        }
    };
    let request = headers.into_iter().fold(
        client
            .post(&record.url)
            .timeout(timeout)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(body.to_owned()),
        |request, (name, value)| request.header(name, value),
    );
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = if status.as_u16() == 429 || status.as_u16() == 503 {
                response.headers().get(RETRY_AFTER).and_then(parse_retry_after)
            } else {
                None
            };
            // Read (and drop) the body so the connection can be reused.
            let _ = response.bytes().await;
            let took = started.elapsed();
            if status.is_success() {
                SendResult {
                    status: Some(status.as_u16()),
                    error: None,
                    retry_after: None,
                    took,
                    result: "success",
                }
            } else {
                let result = match status.as_u16() {
                    429 => "http_429",
                    400..=499 => "http_4xx",
                    _ => "http_5xx",
                };
                SendResult {
                    status: Some(status.as_u16()),
                    error: Some(format!("HTTP {status}")),
                    retry_after,
                    took,
                    result,
                }
            }
        }
        Err(error) => {
            let (message, result) = if error.is_timeout() {
                (format!("timed out after {}", humantime::format_duration(timeout)), "timeout")
            } else if error.is_connect() {
                (format!("cannot connect: {}", root_cause(&error)), "connect")
            } else {
                (root_cause(&error), "other")
            };
            SendResult {
                status: None,
                error: Some(message),
                retry_after: None,
                took: started.elapsed(),
                result,
            }
        }
    }
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Parses `Retry-After`: whole seconds, or an HTTP date.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after(&HeaderValue::from_static("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed =
            parse_retry_after(&HeaderValue::from_str(&later).expect("header")).expect("a date");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    proptest::proptest! {
        /// Any header value: no panic; whole seconds read exactly; anything else is a date in
        /// the future (at most its distance) or nothing.
        #[test]
        fn any_retry_after_parses_or_is_ignored(text in "[ -~]{0,40}", seconds in 0u64..10_000_000) {
            if let Ok(value) = HeaderValue::from_str(&text) {
                let parsed = parse_retry_after(&value);
                if let Ok(whole) = text.trim().parse::<u64>() {
                    proptest::prop_assert_eq!(parsed, Some(Duration::from_secs(whole)));
                }
            }
            let value = HeaderValue::from_str(&seconds.to_string()).expect("digits");
            proptest::prop_assert_eq!(parse_retry_after(&value), Some(Duration::from_secs(seconds)));
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(seconds));
            let parsed = parse_retry_after(&HeaderValue::from_str(&date).expect("date")).expect("a date");
            proptest::prop_assert!(parsed <= Duration::from_secs(seconds));
            proptest::prop_assert!(parsed + Duration::from_secs(2) >= Duration::from_secs(seconds));
        }
    }
}
