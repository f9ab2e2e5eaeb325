//! The rtc-telemetry service: HTTP and gRPC ingest into the telemetry core, the pipeline from
//! the core's ordered outputs to the store, the query API, Prometheus metrics, and the `demo` and
//! `simulate` commands. `main.rs` only wires these together.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod pipeline;
pub mod report;
pub mod room_reports;
pub mod shutdown;
pub mod simulate;
pub mod state;
pub mod webhooks;
