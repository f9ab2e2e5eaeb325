//! The crate's integration tests: one binary, a module per helper.

mod nats;
mod postgres;
