//! End-to-end tests of the service: the real application on port 0 with a temporary SQLite
//! database, driven over HTTP and gRPC like an SFU and a dashboard would.

mod auth;
mod bad_input;
mod cluster;
mod cluster_ops;
mod cluster_replay;
mod cluster_reports;
mod conformance;
mod crash;
mod dashboard;
mod database_failure;
mod e2e_ingest;
mod e2e_query;
mod janus;
mod janus_e2e;
mod limits;
mod quality;
#[path = "../../../telemetry-core/tests/common/receivers.rs"]
mod receivers;
mod recorder;
mod restart;
mod shared_database;
mod shutdown;
mod support;
mod webhooks;
