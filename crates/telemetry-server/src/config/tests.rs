//! Tests of configuration loading: layers, and a clear error naming the key for bad input.

use std::time::Duration;

use crate::config::{ConfigError, FlagOverrides, Role, StoreBackend, load};

fn dev() -> FlagOverrides {
    FlagOverrides { dev: true, ..FlagOverrides::default() }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn error_of(result: Result<crate::config::Config, ConfigError>) -> String {
    result.expect_err("refused").to_string()
}

#[test]
fn the_defaults_are_those_of_the_design() {
    let config = load(None, &[], &dev()).expect("defaults with --dev");
    assert_eq!(config.http.bind.to_string(), "127.0.0.1:7890");
    assert_eq!(config.grpc.bind.to_string(), "127.0.0.1:7891");
    assert_eq!(config.stats.flush_interval, Duration::from_secs(30));
    assert_eq!(config.stats.worker_cleanup_wait, Duration::from_secs(180));
    assert_eq!(config.store.data_dir.to_str(), Some("./data"));
    assert_eq!(config.webhooks.request_timeout, Duration::from_secs(10));
    assert_eq!(config.webhooks.retry_schedule.len(), 10);
    assert_eq!(config.webhooks.retry_schedule[9], Duration::from_secs(12 * 3600));
    assert_eq!(config.keys.len(), 1);
    assert_eq!((config.keys[0].key.as_str(), config.keys[0].secret.as_str()), ("devkey", "secret"));
    assert_eq!(config.keys[0].roles, vec![Role::Ingest, Role::Read, Role::Admin]);
}

#[test]
fn without_keys_and_without_dev_the_service_refuses_to_start() {
    let message = error_of(load(None, &[], &FlagOverrides::default()));
    assert!(message.contains("`keys`") && message.contains("--dev"), "{message}");
}

#[test]
fn layers_apply_in_order_file_then_environment_then_flags() {
    let file = r#"
[stats]
flush_interval = "10s"
[http]
bind = "127.0.0.1:9000"
[[keys]]
key = "k1"
secret = "s1"
roles = ["read"]
"#;
    let environment = env(&[
        ("RTC_TELEMETRY_STATS__FLUSH_INTERVAL", "5s"),
        ("RTC_TELEMETRY_HTTP__MAX_IN_FLIGHT", "7"),
        ("OTHER_VARIABLE", "ignored"),
    ]);
    let flags = crate::config::FlagOverrides {
        http_bind: Some("127.0.0.1:9100".parse().expect("addr")),
        ..dev()
    };
    let config = load(Some(("file.toml", file)), &environment, &flags).expect("loads");
    assert_eq!(config.stats.flush_interval, Duration::from_secs(5), "environment over file");
    assert_eq!(config.http.max_in_flight, 7);
    assert_eq!(config.http.bind.to_string(), "127.0.0.1:9100", "flag over file");
    assert_eq!(config.keys.len(), 1, "--dev adds no key when keys are configured");
    assert_eq!(config.keys[0].key, "k1");
}

#[test]
fn postgres_is_configured_from_the_file_or_the_environment() {
    let environment = env(&[
        ("RTC_TELEMETRY_STORE__BACKEND", "postgres"),
        ("RTC_TELEMETRY_STORE__URL", "postgres://rtct:pw@127.0.0.1:5432/rtc_telemetry"),
    ]);
    let config = load(None, &environment, &dev()).expect("loads");
    assert_eq!(config.store.backend, StoreBackend::Postgres);
    match config.store_config() {
        telemetry_store::StoreConfig::Postgres(postgres) => {
            assert_eq!(postgres.url, "postgres://rtct:pw@127.0.0.1:5432/rtc_telemetry");
            assert_eq!(postgres.max_connections, 16, "the default");
        }
        other => panic!("not PostgreSQL: {other:?}"),
    }
    let config = load(None, &[], &dev()).expect("loads");
    assert!(matches!(config.store_config(), telemetry_store::StoreConfig::Sqlite(_)));
}

#[test]
fn instance_ids_are_configured_or_unique_in_the_process() {
    let config =
        load(Some(("f.toml", "[cluster]\ninstance_id = \"sfu-telemetry-1\"")), &[], &dev())
            .expect("loads");
    assert_eq!(config.instance_id(), "sfu-telemetry-1");
    let config = load(None, &[], &dev()).expect("loads");
    let (first, second) = (config.instance_id(), config.instance_id());
    assert_ne!(first, second, "two services in one process claim under different ids");
    assert!(first.contains(&std::process::id().to_string()), "{first}");
}

#[test]
fn keys_can_come_from_the_environment() {
    let environment = env(&[(
        "RTC_TELEMETRY_KEYS",
        r#"[{key = "k", secret = "s", roles = ["ingest", "admin"]}]"#,
    )]);
    let config = load(None, &environment, &FlagOverrides::default()).expect("loads");
    assert_eq!(config.keys[0].roles, vec![Role::Ingest, Role::Admin]);
}

#[test]
fn bad_values_are_refused_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[stats]\nflush_interval = \"30\"", "`stats.flush_interval`"),
        ("[stats]\nflush_interval = \"0s\"", "`stats.flush_interval`"),
        ("[http]\nbind = \"nowhere\"", "`http.bind`"),
        ("[http]\nmax_in_flight = -1", "`http.max_in_flight`"),
        ("[http]\nmax_in_flight = 0", "`http.max_in_flight`"),
        ("[http]\nmax_calls_per_request = 0", "`http.max_calls_per_request`"),
        ("[store]\nbackend = \"mysql\"", "`store.backend`"),
        ("[store]\nbackend = \"postgres\"", "`store.url`"),
        ("[store]\nbackend = \"postgres\"\nurl = \"mysql://x/y\"", "`store.url`"),
        (
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@h/d\"\nmax_connections = 1",
            "`store.max_connections`",
        ),
        ("[webhooks]\nclaim_lease = \"5s\"", "`webhooks.claim_lease`"),
        ("[webhooks]\nclaim_lease = \"10s\"\nrequest_timeout = \"10s\"", "`webhooks.claim_lease`"),
        ("[cluster]\ninstance = \"x\"", "instance"),
        ("[stats]\nflush_intervall = \"5s\"", "flush_intervall"),
        ("[[keys]]\nkey = \"k\"\nsecret = \"\"\nroles = [\"read\"]", "`keys[0].secret`"),
        ("[[keys]]\nkey = \"k\"\nsecret = \"s\"\nroles = [\"root\"]", "`keys[0].roles[0]`"),
        ("[[keys]]\nkey = \"k\"\nsecret = \"s\"\nroles = []", "`keys[0].roles`"),
        (
            "[[webhooks.endpoints]]\nurl = \"ftp://x\"\nsecret = \"s\"\napi_key = \"k\"",
            "`webhooks.endpoints[0].url`",
        ),
        (
            "[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"",
            "`webhooks.endpoints[0].api_key`",
        ),
        (
            "[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook\"\nsigning = \"standard\"\nsecret = \"nope\"",
            "`webhooks.endpoints[0].secret`",
        ),
        (
            "[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret = \"s\"\napi_key = \"k\"\ninclude_events = [\"room_exploded\"]",
            "`webhooks.endpoints[0].include_events`",
        ),
        ("[limits]\nmax_nodes = 0", "`limits.max_nodes`"),
        ("[limits]\nmax_participants = 0", "`limits.max_participants`"),
        ("[limits]\nmax_tracks_per_participant = 0", "`limits.max_tracks_per_participant`"),
        ("[limits]\nmax_open_rooms = 0", "`limits.max_open_rooms`"),
        ("[limits]\nnode_idle_timeout = \"29s\"", "`limits.node_idle_timeout`"),
        (
            "[limits]\nparticipant_idle_timeout = \"1m\"\n[stats]\nflush_interval = \"61s\"",
            "`limits.participant_idle_timeout`",
        ),
        ("[webhooks]\nretry_schedule = []", "`webhooks.retry_schedule`"),
        ("[webhooks]\nretry_schedule = [\"soon\"]", "`webhooks.retry_schedule`"),
        ("[webhooks]\nrequest_timeout = \"0s\"", "`webhooks.request_timeout`"),
        ("[webhooks]\nmax_in_flight = 0", "`webhooks.max_in_flight`"),
        ("[webhooks]\nmax_in_flight_per_endpoint = 0", "`webhooks.max_in_flight_per_endpoint`"),
        (
            "[[webhooks.endpoints]]\nurl = \"http://127.0.0.1:9/hook\"\nsigning = \"jwt\"\nsecret = \"s\"\napi_key = \"k\"",
            "signing",
        ),
    ];
    for (file, expected) in cases {
        let message = error_of(load(Some(("bad.toml", file)), &[], &dev()));
        assert!(
            message.contains(expected),
            "{file:?} gave {message:?}, expected it to name {expected}"
        );
    }
}

#[test]
fn a_file_that_is_not_toml_is_refused_saying_so() {
    let message = error_of(load(Some(("broken.toml", "[stats\nflush")), &[], &dev()));
    assert!(message.contains("broken.toml") && message.contains("not valid TOML"), "{message}");
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let message =
        error_of(load(None, &env(&[("RTC_TELEMETRY_STATS__FLUSH_INTERVAL", "soon")]), &dev()));
    assert!(message.contains("`stats.flush_interval`"), "{message}");
    let message = error_of(load(None, &env(&[("RTC_TELEMETRY_HTTP__BIND__PORT", "1")]), &dev()));
    assert!(message.contains("RTC_TELEMETRY_HTTP__BIND__PORT"), "{message}");
}

#[test]
fn the_printed_default_config_is_the_loaded_default() {
    // Every key of the struct is in the default file (deny_unknown_fields and no serde defaults
    // on sections): loading the file alone must succeed once a key is added.
    let text = crate::config::DEFAULT_CONFIG
        .replace("keys = []", "keys = [{ key = \"k\", secret = \"s\", roles = [\"read\"] }]");
    load(Some(("default.toml", &text)), &[], &FlagOverrides::default())
        .expect("the default file loads");
}

#[test]
fn token_lifetime_and_string_caps_default_and_are_validated() {
    let config = load(None, &[], &dev()).expect("defaults");
    assert_eq!(config.max_token_lifetime, Duration::from_secs(24 * 3600));
    assert_eq!((config.limits.max_id_bytes, config.limits.max_text_bytes), (256, 65536));
    let config = load(
        None,
        &env(&[
            ("RTC_TELEMETRY_MAX_TOKEN_LIFETIME", "6h"),
            ("RTC_TELEMETRY_LIMITS__MAX_ID_BYTES", "64"),
        ]),
        &dev(),
    )
    .expect("loads");
    assert_eq!(config.max_token_lifetime, Duration::from_secs(6 * 3600));
    assert_eq!(config.limits.max_id_bytes, 64);
    for (variable, value, expected) in [
        ("RTC_TELEMETRY_MAX_TOKEN_LIFETIME", "10s", "`max_token_lifetime`: must be at least 1m"),
        ("RTC_TELEMETRY_MAX_TOKEN_LIFETIME", "forever", "`max_token_lifetime`: invalid duration"),
        ("RTC_TELEMETRY_LIMITS__MAX_ID_BYTES", "8", "`limits.max_id_bytes`: must be at least 16"),
        (
            "RTC_TELEMETRY_LIMITS__MAX_TEXT_BYTES",
            "100",
            "`limits.max_text_bytes`: must be at least",
        ),
        ("RTC_TELEMETRY_LIMITS__MAX_ID_BYTES", "-1", "`limits.max_id_bytes`"),
    ] {
        let message = error_of(load(None, &env(&[(variable, value)]), &dev()));
        assert!(message.contains(expected), "{variable}={value}: {message}");
    }
}

#[test]
fn the_janus_section_has_the_designs_defaults_and_refuses_bad_values_by_name() {
    let config = load(None, &[], &dev()).expect("defaults");
    assert_eq!(config.janus.room_idle_timeout, Duration::from_secs(30));
    let adapter = config.janus_adapter();
    assert_eq!(adapter.room_idle_timeout, Duration::from_secs(30));
    assert_eq!(adapter.session_idle_timeout, Duration::from_secs(300));
    assert_eq!(adapter.limits.max_emitters, 100);
    let file = "[janus]\nroom_idle_timeout = \"2m\"\nmax_rooms = 5\n";
    let config = load(Some(("janus.toml", file)), &[], &dev()).expect("a file");
    assert_eq!(config.janus.room_idle_timeout, Duration::from_secs(120));
    assert_eq!(config.janus_adapter().limits.max_rooms, 5);
    let cases = [
        (("RTC_TELEMETRY_JANUS__ROOM_IDLE_TIMEOUT", "0s"), "janus.room_idle_timeout"),
        (("RTC_TELEMETRY_JANUS__ROOM_IDLE_TIMEOUT", "soon"), "janus.room_idle_timeout"),
        (("RTC_TELEMETRY_JANUS__SESSION_IDLE_TIMEOUT", "30s"), "janus.session_idle_timeout"),
        (("RTC_TELEMETRY_JANUS__MAX_SESSIONS", "0"), "janus.max_sessions"),
        (("RTC_TELEMETRY_JANUS__MAX_EMITTERS", "-1"), "janus.max_emitters"),
        (("RTC_TELEMETRY_JANUS__MAX_STREAMS_PER_HANDLE", "0"), "janus.max_streams_per_handle"),
        (("RTC_TELEMETRY_JANUS__GROUPING", "true"), "janus"),
    ];
    for ((name, value), key) in cases {
        let message = error_of(load(None, &env(&[(name, value)]), &dev()));
        assert!(message.contains(key), "{name}={value}: {message}");
    }
}

#[test]
fn the_cluster_section_has_the_designs_defaults_and_refuses_bad_values_by_name() {
    let config = load(None, &[], &dev()).expect("defaults with --dev");
    let cluster = &config.cluster;
    assert!(!cluster.enabled);
    assert_eq!(cluster.nats_url, "nats://127.0.0.1:4222");
    assert_eq!(cluster.stream, "RTC_TELEMETRY");
    assert_eq!(cluster.subject_prefix, "rtctelemetry.v1.calls");
    assert_eq!(cluster.partitions, 16);
    assert_eq!(cluster.lease, Duration::from_secs(10));

    let postgres =
        "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@h/d\"\n[cluster]\nenabled = true\n";
    let on = load(Some(("c.toml", postgres)), &[], &dev()).expect("cluster on postgres");
    assert!(on.cluster.enabled);
    let cases: &[(&str, &str)] = &[
        ("[cluster]\nenabled = true", "`cluster.enabled`"),
        ("nats_url = \"http://127.0.0.1:4222\"", "`cluster.nats_url`"),
        ("nats_url = \"\"", "`cluster.nats_url`"),
        ("stream = \"\"", "`cluster.stream`"),
        ("stream = \"a.b\"", "`cluster.stream`"),
        ("subject_prefix = \"calls.>\"", "`cluster.subject_prefix`"),
        ("subject_prefix = \"calls.\"", "`cluster.subject_prefix`"),
        ("partitions = 0", "`cluster.partitions`"),
        ("partitions = 1025", "`cluster.partitions`"),
        ("lease = \"500ms\"", "`cluster.lease`"),
    ];
    for (lines, expected) in cases {
        let file =
            if lines.starts_with('[') { (*lines).to_owned() } else { format!("{postgres}{lines}") };
        let message = error_of(load(Some(("bad.toml", &file)), &[], &dev()));
        assert!(message.contains(expected), "{file:?} gave {message:?}, expected {expected}");
    }
}

#[test]
fn the_quality_section_refuses_bad_values_by_name() {
    let config = load(None, &[], &dev()).expect("defaults with --dev");
    assert!(config.quality.enabled);
    let cases: &[(&str, &str)] = &[
        ("loss_pct = 101.0", "`quality.loss_pct`"),
        ("loss_pct = -1.0", "`quality.loss_pct`"),
        ("jitter_ms = -5.0", "`quality.jitter_ms`"),
        ("rtt_ms = nan", "`quality.rtt_ms`"),
        ("min_score = 5.5", "`quality.min_score`"),
        ("open_after = \"2h\"", "`quality.open_after`"),
        ("close_after = \"2h\"", "`quality.close_after`"),
    ];
    for (line, expected) in cases {
        let file = format!("[quality]\n{line}\n");
        let message = error_of(load(Some(("bad.toml", &file)), &[], &dev()));
        assert!(message.contains(expected), "{file:?} gave {message:?}, expected {expected}");
    }
}
