//! `Idempotency-Key` (DESIGN.md, "Ingest"): a retry of an acknowledged request with the same key,
//! from the same API key, within [`WINDOW`], is answered like the first and takes effect no
//! second time.
//!
//! In cluster mode the key becomes the JetStream message id (`crate::cluster`), so the retry may
//! go to any instance. Without the cluster, [`RecentKeys`] remembers the answers of this
//! instance's recent keys: bounded ([`MAX_KEYS`], the oldest forgotten first), per API key. A
//! second request with a key whose first is still in progress is refused with 409 (retry it
//! later), as answering it before the first is known could be wrong either way. A request that
//! failed leaves no trace: its retry takes effect.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use crate::error::{ApiError, ErrorCode};

/// The header.
pub const HEADER: &str = "idempotency-key";

/// Longest key, in bytes (DESIGN.md).
pub const MAX_KEY_BYTES: usize = 200;

/// How long a key is honoured.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// Most keys remembered at once without the cluster: at 10 requests a second with distinct keys,
/// ten minutes' worth, a few MB at most.
pub const MAX_KEYS: usize = 10_000;

/// The request's `Idempotency-Key`, if any.
///
/// # Errors
///
/// `InvalidArgument` naming the header for an empty key, one over [`MAX_KEY_BYTES`], one with
/// characters other than printable ASCII, or the header given twice.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid("`Idempotency-Key`: given more than once"));
    }
    parse(value.as_bytes()).map(Some)
}

/// A key's bytes checked (the same rule for HTTP's header and gRPC's `idempotency-key`
/// metadata).
///
/// # Errors
///
/// `InvalidArgument` naming `Idempotency-Key`, as for [`key`].
pub fn parse(bytes: &[u8]) -> Result<String, ApiError> {
    if bytes.is_empty() || bytes.len() > MAX_KEY_BYTES {
        return Err(ApiError::invalid(format!(
            "`Idempotency-Key`: must be 1 to {MAX_KEY_BYTES} characters, not {}",
            bytes.len()
        )));
    }
    if !bytes.iter().all(|&byte| (0x20..=0x7e).contains(&byte)) {
        return Err(ApiError::invalid(
            "`Idempotency-Key`: must be printable ASCII characters only",
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The answers of recent keys, without the cluster.
#[derive(Debug)]
pub struct RecentKeys<T> {
    inner: Mutex<Recent<T>>,
}

impl<T> Default for RecentKeys<T> {
    fn default() -> Self {
        Self { inner: Mutex::new(Recent::default()) }
    }
}

#[derive(Debug)]
struct Recent<T> {
    entries: HashMap<(String, String), Entry<T>>,
    /// Keys in the order they were first seen, with that time: the front expires first.
    order: VecDeque<((String, String), Instant)>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self { entries: HashMap::new(), order: VecDeque::new() }
    }
}

#[derive(Debug)]
enum Entry<T> {
    InProgress,
    Done(T),
}

/// What to do with a request that carries a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin<T> {
    /// The first with this key (in the window): process it, then [`RecentKeys::finish`].
    First,
    /// A repeat of an acknowledged request: answer this.
    Repeat(T),
}

impl<T: Clone> RecentKeys<T> {
    /// Starts a request of `api_key` with `key` at `now`.
    ///
    /// # Errors
    ///
    /// `Conflict` (409, `Retry-After`) while the first request with the key is in progress.
    pub fn begin(&self, api_key: &str, key: &str, now: Instant) -> Result<Begin<T>, ApiError> {
        let mut recent = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.expire(now);
        let id = (api_key.to_owned(), key.to_owned());
        match recent.entries.get(&id) {
            Some(Entry::Done(answer)) => return Ok(Begin::Repeat(answer.clone())),
            Some(Entry::InProgress) => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "`Idempotency-Key`: a request with this key is still in progress; send it again later",
                )
                .retry_after(1));
            }
            None => {}
        }
        while recent.order.len() >= MAX_KEYS {
            let Some((oldest, _)) = recent.order.pop_front() else { break };
            recent.entries.remove(&oldest);
        }
        recent.entries.insert(id.clone(), Entry::InProgress);
        recent.order.push_back((id, now));
        Ok(Begin::First)
    }

    /// Ends the first request with the key: its answer is kept if it succeeded, the key
    /// forgotten if it failed.
    pub fn finish(&self, api_key: &str, key: &str, answer: Option<T>) {
        let mut recent = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (api_key.to_owned(), key.to_owned());
        match answer {
            Some(answer) => {
                if let Some(entry) = recent.entries.get_mut(&id) {
                    *entry = Entry::Done(answer);
                }
            }
            None => {
                recent.entries.remove(&id);
                recent.order.retain(|(other, _)| *other != id);
            }
        }
    }
}

impl<T> Recent<T> {
    fn expire(&mut self, now: Instant) {
        while let Some((_, at)) = self.order.front() {
            if now.duration_since(*at) < WINDOW {
                break;
            }
            let (id, _) = self.order.pop_front().expect("a front entry");
            // A key still in progress after the window stays until its request finishes.
            if matches!(self.entries.get(&id), Some(Entry::Done(_))) {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
