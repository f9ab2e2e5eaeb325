//! The `rtc-telemetry` binary: parses the command line, sets up logging, loads the configuration
//! (exit code 64 on a bad one) and dispatches to the library.

use std::process::ExitCode;

use clap::Parser as _;
use telemetry_server::cli::{self, Cli, Command, ConfigCommand, LogFormat};
use telemetry_server::{demo, simulate};

/// mimalloc rather than the C library's allocator: glibc keeps memory that a multi-threaded
/// service freed in per-thread arenas, so the resident set of a long run kept rising while the
/// heap stayed flat (`BENCHMARKS.md`, "Soak").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let environment: Vec<(String, String)> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rtc-telemetry: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match args.load(&environment) {
            Ok(config) => runtime.block_on(cli::serve(config)),
            Err(error) => return cli::config_error(&error),
        },
        Command::Config { command: ConfigCommand::PrintDefault } => {
            // The one thing this command does is print the file to standard output.
            use std::io::Write as _;
            std::io::stdout()
                .write_all(telemetry_server::config::DEFAULT_CONFIG.as_bytes())
                .map_err(anyhow::Error::from)
        }
        Command::Config { command: ConfigCommand::Check(args) } => match args.load(&environment) {
            Ok(_) => {
                eprintln!("rtc-telemetry: the configuration is valid");
                Ok(())
            }
            Err(error) => return cli::config_error(&error),
        },
        Command::Demo(args) => runtime.block_on(demo::run(args, &environment)),
        Command::Simulate(args) => runtime.block_on(async {
            let started = std::time::Instant::now();
            let summary = simulate::run(args).await?;
            simulate::print_summary(&summary, started.elapsed());
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rtc-telemetry: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RTC_TELEMETRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
