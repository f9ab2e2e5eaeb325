//! Every metric name rtc-telemetry exports, in one place: LiveKit's families, named verbatim as in
//! LiveKit (reference §5, §3.11), and the service's own `rtc_telemetry_*`. The core's snapshot and
//! the server's own families (`telemetry-server`'s `metrics.rs`) are named with these constants.
//! The webhook dispatcher's families are listed here too; the server's tests check that every
//! family `/metrics` renders is in [`ALL`].

/// `livekit_packet_total`: packets by direction, transmission and country.
pub const LIVEKIT_PACKET_TOTAL: &str = "livekit_packet_total";
/// `livekit_packet_bytes`: bytes by direction, transmission and country.
pub const LIVEKIT_PACKET_BYTES: &str = "livekit_packet_bytes";
/// `livekit_nack_total`.
pub const LIVEKIT_NACK_TOTAL: &str = "livekit_nack_total";
/// `livekit_pli_total`.
pub const LIVEKIT_PLI_TOTAL: &str = "livekit_pli_total";
/// `livekit_fir_total`.
pub const LIVEKIT_FIR_TOTAL: &str = "livekit_fir_total";
/// `livekit_packet_loss_total`: packets lost on media streams.
pub const LIVEKIT_PACKET_LOSS_TOTAL: &str = "livekit_packet_loss_total";
/// `livekit_packet_out_of_order_total`.
pub const LIVEKIT_PACKET_OUT_OF_ORDER_TOTAL: &str = "livekit_packet_out_of_order_total";
/// `livekit_packet_loss_percent`: histogram of loss per stream sample.
pub const LIVEKIT_PACKET_LOSS_PERCENT: &str = "livekit_packet_loss_percent";
/// `livekit_packet_out_of_order_percent`: histogram per stream sample.
pub const LIVEKIT_PACKET_OUT_OF_ORDER_PERCENT: &str = "livekit_packet_out_of_order_percent";
/// `livekit_jitter_us`: histogram of jitter per stream sample.
pub const LIVEKIT_JITTER_US: &str = "livekit_jitter_us";
/// `livekit_rtt_ms`: histogram of round-trip time per stream sample.
pub const LIVEKIT_RTT_MS: &str = "livekit_rtt_ms";
/// `livekit_room_total`: rooms open.
pub const LIVEKIT_ROOM_TOTAL: &str = "livekit_room_total";
/// `livekit_room_duration_seconds`: histogram of room durations.
pub const LIVEKIT_ROOM_DURATION_SECONDS: &str = "livekit_room_duration_seconds";
/// `livekit_participant_total`: participants with a stats worker.
pub const LIVEKIT_PARTICIPANT_TOTAL: &str = "livekit_participant_total";
/// `livekit_participant_join_total`: join progress.
pub const LIVEKIT_PARTICIPANT_JOIN_TOTAL: &str = "livekit_participant_join_total";
/// `livekit_track_published_total`: tracks published now.
pub const LIVEKIT_TRACK_PUBLISHED_TOTAL: &str = "livekit_track_published_total";
/// `livekit_track_subscribed_total`: tracks subscribed now.
pub const LIVEKIT_TRACK_SUBSCRIBED_TOTAL: &str = "livekit_track_subscribed_total";
/// `livekit_track_publish_counter`: publish attempts and successes.
pub const LIVEKIT_TRACK_PUBLISH_COUNTER: &str = "livekit_track_publish_counter";
/// `livekit_track_subscribe_counter`: subscribe attempts, successes and failures.
pub const LIVEKIT_TRACK_SUBSCRIBE_COUNTER: &str = "livekit_track_subscribe_counter";
/// `livekit_webhook_dispatch_total`: webhook deliveries by final outcome.
pub const LIVEKIT_WEBHOOK_DISPATCH_TOTAL: &str = "livekit_webhook_dispatch_total";

/// `rtc_telemetry_stats_samples_total`: `TrackStats` samples by outcome.
pub const STATS_SAMPLES_TOTAL: &str = "rtc_telemetry_stats_samples_total";
/// `rtc_telemetry_limit_refusals_total`: refusals of the limits on caller-keyed state.
pub const LIMIT_REFUSALS_TOTAL: &str = "rtc_telemetry_limit_refusals_total";
/// `rtc_telemetry_idle_expired_total`: state forgotten for idleness.
pub const IDLE_EXPIRED_TOTAL: &str = "rtc_telemetry_idle_expired_total";
/// `rtc_telemetry_live`: caller-keyed state held now.
pub const LIVE: &str = "rtc_telemetry_live";
/// `rtc_telemetry_core_outputs_pushed_total`: outputs put on the core's output queue.
pub const CORE_OUTPUTS_PUSHED_TOTAL: &str = "rtc_telemetry_core_outputs_pushed_total";
/// `rtc_telemetry_core_outputs_popped_total`: outputs taken off it.
pub const CORE_OUTPUTS_POPPED_TOTAL: &str = "rtc_telemetry_core_outputs_popped_total";
/// `rtc_telemetry_stats_workers`: stats workers held.
pub const STATS_WORKERS: &str = "rtc_telemetry_stats_workers";
/// `rtc_telemetry_ingest_calls_total`: calls received by transport and result.
pub const INGEST_CALLS_TOTAL: &str = "rtc_telemetry_ingest_calls_total";
/// `rtc_telemetry_ingest_requests_refused_total`: ingest requests refused whole.
pub const INGEST_REQUESTS_REFUSED_TOTAL: &str = "rtc_telemetry_ingest_requests_refused_total";
/// `rtc_telemetry_recorder_messages_total`: messages of LiveKit's recorder streams.
pub const RECORDER_MESSAGES_TOTAL: &str = "rtc_telemetry_recorder_messages_total";
/// `rtc_telemetry_recorder_dropped_total`: recorder items dropped as invalid.
pub const RECORDER_DROPPED_TOTAL: &str = "rtc_telemetry_recorder_dropped_total";
/// `rtc_telemetry_flush_duration_seconds`: histogram of flush durations.
pub const FLUSH_DURATION_SECONDS: &str = "rtc_telemetry_flush_duration_seconds";
/// `rtc_telemetry_store_write_seconds`: histogram of store write durations.
pub const STORE_WRITE_SECONDS: &str = "rtc_telemetry_store_write_seconds";
/// `rtc_telemetry_store_write_failures_total`.
pub const STORE_WRITE_FAILURES_TOTAL: &str = "rtc_telemetry_store_write_failures_total";
/// `rtc_telemetry_stored_outputs_total`: core outputs stored.
pub const STORED_OUTPUTS_TOTAL: &str = "rtc_telemetry_stored_outputs_total";
/// `rtc_telemetry_webhook_attempts_total`: webhook attempts by result.
pub const WEBHOOK_ATTEMPTS_TOTAL: &str = "rtc_telemetry_webhook_attempts_total";
/// `rtc_telemetry_webhook_claims_total`: deliveries claimed from the outbox.
pub const WEBHOOK_CLAIMS_TOTAL: &str = "rtc_telemetry_webhook_claims_total";
/// `rtc_telemetry_webhook_claim_failures_total`.
pub const WEBHOOK_CLAIM_FAILURES_TOTAL: &str = "rtc_telemetry_webhook_claim_failures_total";
/// `rtc_telemetry_webhook_fenced_total`: attempts whose claim was no longer current.
pub const WEBHOOK_FENCED_TOTAL: &str = "rtc_telemetry_webhook_fenced_total";
/// `rtc_telemetry_webhook_in_flight`: webhook requests in flight.
pub const WEBHOOK_IN_FLIGHT: &str = "rtc_telemetry_webhook_in_flight";
/// `rtc_telemetry_webhook_outbox`: deliveries in the outbox by status.
pub const WEBHOOK_OUTBOX: &str = "rtc_telemetry_webhook_outbox";

/// Janus events received on `POST /v1/ingest/janus`, by outcome.
pub const JANUS_EVENTS_TOTAL: &str = "rtc_telemetry_janus_events_total";
/// Stats samples made from Janus events that the core shed.
pub const JANUS_SAMPLES_SHED_TOTAL: &str = "rtc_telemetry_janus_samples_shed_total";
/// Janus events rejected by a cap of the `[janus]` section.
pub const JANUS_LIMIT_REFUSALS_TOTAL: &str = "rtc_telemetry_janus_limit_refusals_total";
/// Janus sessions taken as gone without an event.
pub const JANUS_SESSIONS_EXPIRED_TOTAL: &str = "rtc_telemetry_janus_sessions_expired_total";
/// Janus media counters that went back (a new baseline).
pub const JANUS_COUNTER_RESETS_TOTAL: &str = "rtc_telemetry_janus_counter_resets_total";
/// What the Janus adapter holds.
pub const JANUS_STATE: &str = "rtc_telemetry_janus_state";

/// Partition leases this instance holds now (cluster mode).
pub const CLUSTER_PARTITIONS_OWNED: &str = "rtc_telemetry_cluster_partitions_owned";
/// Changes of this instance's partition leases, by event (cluster mode).
pub const CLUSTER_LEASE_EVENTS_TOTAL: &str = "rtc_telemetry_cluster_lease_events_total";
/// Messages published to JetStream by ingest and acknowledged, by outcome (cluster mode).
pub const CLUSTER_PUBLISHED_MESSAGES_TOTAL: &str = "rtc_telemetry_cluster_published_messages_total";
/// JetStream messages the partition consumers received, by outcome (cluster mode).
pub const CLUSTER_CONSUMED_MESSAGES_TOTAL: &str = "rtc_telemetry_cluster_consumed_messages_total";
/// Calls of consumed messages the core refused (cluster mode).
pub const CLUSTER_REFUSED_CALLS_TOTAL: &str = "rtc_telemetry_cluster_refused_calls_total";
/// Messages of a held partition not yet delivered plus delivered and not acknowledged, by
/// partition (cluster mode).
pub const CLUSTER_CONSUMER_LAG: &str = "rtc_telemetry_cluster_consumer_lag";
/// Unacknowledged messages of a held partition delivered more than once, by partition (cluster
/// mode).
pub const CLUSTER_CONSUMER_REDELIVERED: &str = "rtc_telemetry_cluster_consumer_redelivered";

/// Every name above.
pub const ALL: [&str; 54] = [
    LIVEKIT_PACKET_TOTAL,
    LIVEKIT_PACKET_BYTES,
    LIVEKIT_NACK_TOTAL,
    LIVEKIT_PLI_TOTAL,
    LIVEKIT_FIR_TOTAL,
    LIVEKIT_PACKET_LOSS_TOTAL,
    LIVEKIT_PACKET_OUT_OF_ORDER_TOTAL,
    LIVEKIT_PACKET_LOSS_PERCENT,
    LIVEKIT_PACKET_OUT_OF_ORDER_PERCENT,
    LIVEKIT_JITTER_US,
    LIVEKIT_RTT_MS,
    LIVEKIT_ROOM_TOTAL,
    LIVEKIT_ROOM_DURATION_SECONDS,
    LIVEKIT_PARTICIPANT_TOTAL,
    LIVEKIT_PARTICIPANT_JOIN_TOTAL,
    LIVEKIT_TRACK_PUBLISHED_TOTAL,
    LIVEKIT_TRACK_SUBSCRIBED_TOTAL,
    LIVEKIT_TRACK_PUBLISH_COUNTER,
    LIVEKIT_TRACK_SUBSCRIBE_COUNTER,
    LIVEKIT_WEBHOOK_DISPATCH_TOTAL,
    STATS_SAMPLES_TOTAL,
    LIMIT_REFUSALS_TOTAL,
    IDLE_EXPIRED_TOTAL,
    LIVE,
    CORE_OUTPUTS_PUSHED_TOTAL,
    CORE_OUTPUTS_POPPED_TOTAL,
    STATS_WORKERS,
    INGEST_CALLS_TOTAL,
    INGEST_REQUESTS_REFUSED_TOTAL,
    RECORDER_MESSAGES_TOTAL,
    RECORDER_DROPPED_TOTAL,
    FLUSH_DURATION_SECONDS,
    STORE_WRITE_SECONDS,
    STORE_WRITE_FAILURES_TOTAL,
    STORED_OUTPUTS_TOTAL,
    WEBHOOK_ATTEMPTS_TOTAL,
    WEBHOOK_CLAIMS_TOTAL,
    WEBHOOK_CLAIM_FAILURES_TOTAL,
    WEBHOOK_FENCED_TOTAL,
    WEBHOOK_IN_FLIGHT,
    WEBHOOK_OUTBOX,
    JANUS_EVENTS_TOTAL,
    JANUS_SAMPLES_SHED_TOTAL,
    JANUS_LIMIT_REFUSALS_TOTAL,
    JANUS_SESSIONS_EXPIRED_TOTAL,
    JANUS_COUNTER_RESETS_TOTAL,
    JANUS_STATE,
    CLUSTER_PARTITIONS_OWNED,
    CLUSTER_LEASE_EVENTS_TOTAL,
    CLUSTER_PUBLISHED_MESSAGES_TOTAL,
    CLUSTER_CONSUMED_MESSAGES_TOTAL,
    CLUSTER_REFUSED_CALLS_TOTAL,
    CLUSTER_CONSUMER_LAG,
    CLUSTER_CONSUMER_REDELIVERED,
];
