//! Authentication and roles: no token, a bad signature, an expired token, an unknown key and a
//! missing role give 401 or 403, over HTTP and gRPC.

use std::time::Duration;

use serde_json::json;
use telemetry_proto::v1;

use crate::support::{ADMIN, INGESTER, READER, TestApp};

fn token_with(
    key: &str,
    secret: &str,
    nbf: i64,
    exp: Option<i64>,
    algorithm: jsonwebtoken::Algorithm,
) -> String {
    let mut claims = json!({ "iss": key, "nbf": nbf });
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token")
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs()
        as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_roles_enforced() {
    let app = TestApp::start().await;
    let now = now();
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "missing `Authorization"),
        (Some("Basic abc".to_owned()), 401, "Bearer"),
        (Some("Bearer not.a.jwt".to_owned()), 401, "not a valid JWT"),
        (
            Some(format!(
                "Bearer {}",
                token_with(
                    ADMIN.0,
                    "wrong-secret",
                    now,
                    Some(now + 60),
                    jsonwebtoken::Algorithm::HS256
                )
            )),
            401,
            "signature",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_with(
                    ADMIN.0,
                    ADMIN.1,
                    now - 3600,
                    Some(now - 600),
                    jsonwebtoken::Algorithm::HS256
                )
            )),
            401,
            "expired",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_with(
                    ADMIN.0,
                    ADMIN.1,
                    now + 600,
                    Some(now + 1200),
                    jsonwebtoken::Algorithm::HS256
                )
            )),
            401,
            "not valid yet",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_with(ADMIN.0, ADMIN.1, now, None, jsonwebtoken::Algorithm::HS256)
            )),
            401,
            "`exp`",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_with(ADMIN.0, ADMIN.1, now, Some(now + 60), jsonwebtoken::Algorithm::HS512)
            )),
            401,
            "HS256",
        ),
        (
            Some(format!(
                "Bearer {}",
                token_with("nobody", "secret", now, Some(now + 60), jsonwebtoken::Algorithm::HS256)
            )),
            401,
            "unknown API key `nobody`",
        ),
        (Some(format!("Bearer {}", TestApp::token(INGESTER))), 403, "`read` role"),
        (Some(format!("Bearer {}", TestApp::token(READER))), 200, ""),
    ];
    for (authorization, status, message) in cases {
        let mut request = app.client.get(app.url("/v1/rooms"));
        if let Some(authorization) = &authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "{authorization:?}");
        if status != 200 {
            let body: serde_json::Value = response.json().await.expect("json");
            assert!(
                body["error"]["message"].as_str().unwrap_or("").contains(message),
                "{authorization:?}: {body}"
            );
        }
    }
    // A token within the 60 s leeway of its expiry still passes.
    let lenient =
        token_with(READER.0, READER.1, now - 600, Some(now - 30), jsonwebtoken::Algorithm::HS256);
    let response =
        app.client.get(app.url("/v1/rooms")).bearer_auth(lenient).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);

    // Ingest needs `ingest`; flush needs `admin`.
    let response = app
        .client
        .post(app.url("/v1/telemetry"))
        .bearer_auth(TestApp::token(READER))
        .json(&json!({"calls": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    let response = app
        .client
        .post(app.url("/v1/flush"))
        .bearer_auth(TestApp::token(INGESTER))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    let response = app
        .client
        .post(app.url("/v1/telemetry"))
        .json(&json!({"calls": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_sdk_access_tokens_are_accepted() {
    let app = TestApp::start().await;
    let token = livekit_api::access_token::AccessToken::with_api_key(READER.0, READER.1)
        .with_ttl(Duration::from_secs(600))
        .to_jwt()
        .expect("a LiveKit token");
    let response =
        app.client.get(app.url("/v1/rooms")).bearer_auth(token).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_need_a_token_with_the_ingest_role() {
    let app = TestApp::start().await;
    let endpoint = format!("http://{}", app.grpc);
    for (token, code) in [
        (None, tonic::Code::Unauthenticated),
        (
            Some(format!(
                "Bearer {}",
                token_with(
                    ADMIN.0,
                    "wrong",
                    now(),
                    Some(now() + 60),
                    jsonwebtoken::Algorithm::HS256
                )
            )),
            tonic::Code::Unauthenticated,
        ),
        (Some(format!("Bearer {}", TestApp::token(READER))), tonic::Code::PermissionDenied),
    ] {
        let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
            crate::support::channel(&endpoint).await,
        );
        let mut request =
            tonic::Request::new(tokio_stream::iter(vec![v1::TelemetryBatch::default()]));
        if let Some(token) = &token {
            request.metadata_mut().insert("authorization", token.parse().expect("metadata"));
        }
        let status = client.ingest(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{token:?}: {status:?}");
    }
    app.stop().await;
}

/// `max_token_lifetime` (24 h by default) bounds how long a token may still be valid: a token
/// expiring further ahead (an `exp` of 1e30, or a day and more) is refused with 401 naming the
/// key, over HTTP and gRPC; within the bound (and LiveKit's 6 h SDK default) it is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_valid_for_longer_than_the_maximum_lifetime_are_refused() {
    let app = TestApp::start().await;
    let now = now();
    let exp_token = |exp: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({ "iss": READER.0, "nbf": now, "exp": exp }),
            &jsonwebtoken::EncodingKey::from_secret(READER.1.as_bytes()),
        )
        .expect("token")
    };
    let status_of = |token: String| {
        let request = app.client.get(app.url("/v1/rooms")).bearer_auth(token);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // An `exp` beyond u64 is refused too (the verifier cannot read it as a time).
    let (status, body) = status_of(exp_token(json!(1e30))).await;
    assert_eq!(status, 401, "exp 1e30: {body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("`exp`"), "{body}");
    for exp in
        [json!(1_000_000_000_000_000_000u64), json!(now + 25 * 3600), json!(now + 24 * 3600 + 120)]
    {
        let (status, body) = status_of(exp_token(exp.clone())).await;
        assert_eq!(status, 401, "exp {exp}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap_or("").contains("`max_token_lifetime`"),
            "exp {exp}: {body}"
        );
    }
    for exp in [now + 24 * 3600, now + 23 * 3600, now + 60] {
        let (status, body) = status_of(exp_token(json!(exp))).await;
        assert_eq!(status, 200, "exp now + {} s: {body}", exp - now);
    }
    let six_hours = livekit_api::access_token::AccessToken::with_api_key(READER.0, READER.1)
        .with_ttl(Duration::from_secs(6 * 3600))
        .to_jwt()
        .expect("a LiveKit token");
    assert_eq!(status_of(six_hours).await.0, 200, "LiveKit's default lifetime passes");

    // gRPC refuses the same token.
    let mut client = v1::telemetry_ingest_client::TelemetryIngestClient::new(
        crate::support::channel(&format!("http://{}", app.grpc)).await,
    );
    let forever = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "iss": INGESTER.0, "nbf": now, "exp": now + 400 * 24 * 3600 }),
        &jsonwebtoken::EncodingKey::from_secret(INGESTER.1.as_bytes()),
    )
    .expect("token");
    let mut request = tonic::Request::new(tokio_stream::iter(vec![v1::TelemetryBatch::default()]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {forever}").parse().expect("metadata"));
    let status = client.ingest(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("`max_token_lifetime`"), "{status:?}");
    app.stop().await;
}

/// The maximum lifetime is configurable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_token_lifetime_is_configurable() {
    let app = TestApp::start_with("max_token_lifetime = \"1h\"\n").await;
    let now = now();
    for (exp, status) in [(now + 2 * 3600, 401), (now + 1800, 200)] {
        let token = token_with(READER.0, READER.1, now, Some(exp), jsonwebtoken::Algorithm::HS256);
        let response =
            app.client.get(app.url("/v1/rooms")).bearer_auth(token).send().await.expect("request");
        assert_eq!(response.status().as_u16(), status, "exp now + {} s", exp - now);
    }
    app.stop().await;
}
