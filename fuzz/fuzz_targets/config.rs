//! The configuration loader (`telemetry_server::config::load`): the compiled-in defaults, a TOML
//! file, `RTC_TELEMETRY_*` environment variables and the `--dev` flag, merged and validated.
//!
//! The input is UTF-8: the first character `d` sets `--dev`; then the file's text, then after a
//! NUL byte one environment variable a line (`NAME=value`, `RTC_TELEMETRY_` prepended). Checked:
//! no panic; a refusal says what is wrong; a loaded configuration gives its store and core
//! configuration, and loading again gives the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry_server::config::{ConfigError, FlagOverrides, load};

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let (dev, text) = match text.strip_prefix('d') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (file, environment) = text.split_once('\0').unwrap_or((text, ""));
    let environment: Vec<(String, String)> = environment
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (format!("RTC_TELEMETRY_{name}"), value.to_owned()))
        .collect();
    let flags = FlagOverrides { dev, ..FlagOverrides::default() };
    match load(Some(("fuzz.toml", file)), &environment, &flags) {
        Ok(config) => {
            let _ = config.store_config();
            let core = config.core("fuzz-node");
            assert!(!core.flush_interval.is_zero(), "a validated flush interval is positive");
            let again = load(Some(("fuzz.toml", file)), &environment, &flags).expect("loads again");
            assert_eq!(format!("{again:?}"), format!("{config:?}"), "loading is deterministic");
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            if let ConfigError::Invalid { message, .. } = &error {
                assert!(!message.is_empty(), "{error}");
            }
        }
    }
});
