//! The command line: `serve`, `demo`, `simulate`, `config print-default`; each dispatches to a
//! library function.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, FlagOverrides};

/// `EX_USAGE`: the exit code of a configuration error.
pub const EXIT_CONFIG: u8 = 64;

/// rtc-telemetry: the telemetry service of a WebRTC SFU.
#[derive(Debug, Parser)]
#[command(name = "rtc-telemetry", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Run a dev-mode service with a simulated SFU and a local webhook receiver, and print where
    /// to look.
    Demo(crate::demo::DemoArgs),
    /// Send realistic SFU traffic to a running service.
    Simulate(telemetry_sim::SimulateArgs),
    /// Configuration helpers.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the commented default configuration.
    PrintDefault,
    /// Load and validate a configuration (file, environment, flags) and report problems.
    Check(ServeArgs),
}

/// How `serve` runs.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// A TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Development mode: without configured keys, use key `devkey` and secret `secret`.
    #[arg(long)]
    pub dev: bool,
    /// Overrides `http.bind`.
    #[arg(long)]
    pub http_bind: Option<SocketAddr>,
    /// Overrides `grpc.bind`.
    #[arg(long)]
    pub grpc_bind: Option<SocketAddr>,
    /// Overrides `store.data_dir`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// Loads the configuration these arguments describe, with `environment` as the process
    /// environment.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the key.
    pub fn load(
        &self,
        environment: &[(String, String)],
    ) -> Result<config::Config, config::ConfigError> {
        let text = match &self.config {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| config::ConfigError::Read { path: path.clone(), source })?,
            ),
            None => None,
        };
        let name = self.config.as_ref().map(|path| path.display().to_string()).unwrap_or_default();
        let flags = FlagOverrides {
            http_bind: self.http_bind,
            grpc_bind: self.grpc_bind,
            data_dir: self.data_dir.clone(),
            dev: self.dev,
        };
        config::load(text.as_deref().map(|text| (name.as_str(), text)), environment, &flags)
    }
}

/// Runs `serve`: binds the configured addresses and serves until SIGINT or SIGTERM.
///
/// # Errors
///
/// Fails if the addresses cannot be bound or the service fails.
pub async fn serve(config: config::Config) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let app = crate::app::App::build(config.clone()).await?;
    let http = tokio::net::TcpListener::bind(config.http.bind)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.bind))?;
    let grpc = tokio::net::TcpListener::bind(config.grpc.bind)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc.bind))?;
    app.run(http, grpc, crate::shutdown::signal()).await
}

/// Maps a configuration error to its exit code, printing it.
pub fn config_error(error: &config::ConfigError) -> ExitCode {
    eprintln!("rtc-telemetry: {error}");
    ExitCode::from(EXIT_CONFIG)
}
