//! The dispatcher's state machine, pure (no IO, no clock of its own): how many claims each
//! endpoint may ask for now within the global and per-endpoint bounds, what is in flight, and
//! when to claim again. The queues themselves live in the store, whose claims keep each key's
//! order and its single request in flight across every dispatcher on the database.

use std::collections::HashMap;
use std::time::Duration;

use telemetry_core::UnixMillis;

/// The first wait after a failed claim; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait after failed claims.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Slots, in-flight counts and the next claim time.
#[derive(Debug)]
pub(crate) struct DispatchState {
    max_in_flight: usize,
    max_per_endpoint: usize,
    poll_interval: Duration,
    in_flight: usize,
    per_endpoint: HashMap<String, usize>,
    /// Which endpoint gets the first of the slots left over after an even split; turns every
    /// round, so that under the global bound every endpoint gets its turn.
    rotation: usize,
    /// Claim again at the latest then (polling is the source of truth).
    next_claim: UnixMillis,
    /// Claims failed in a row.
    failures: u32,
}

/// What to do after a claim round.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterClaim {
    /// Some endpoint got every slot it asked for and slots are left: claim again now.
    ClaimAgain,
    /// Wait until the next claim time (or a wake-up).
    Wait,
}

impl DispatchState {
    /// A state with nothing in flight; the first claim is due at `now`.
    pub(crate) fn new(
        max_in_flight: usize,
        max_per_endpoint: usize,
        poll_interval: Duration,
        now: UnixMillis,
    ) -> Self {
        Self {
            max_in_flight,
            max_per_endpoint,
            poll_interval,
            in_flight: 0,
            per_endpoint: HashMap::new(),
            rotation: 0,
            next_claim: now,
            failures: 0,
        }
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many deliveries each of `endpoints` may claim now: the free global slots spread over
    /// the endpoints one at a time, round robin from a rotating start, each up to its own free
    /// slots. Endpoints with no slot are left out.
    pub(crate) fn budget(&mut self, endpoints: &[String]) -> Vec<(String, u32)> {
        let mut free = self.max_in_flight.saturating_sub(self.in_flight);
        let mut slots: Vec<(String, usize, usize)> = endpoints
            .iter()
            .map(|endpoint| {
                let used = self.per_endpoint.get(endpoint).copied().unwrap_or(0);
                (endpoint.clone(), 0, self.max_per_endpoint.saturating_sub(used))
            })
            .filter(|(_, _, room)| *room > 0)
            .collect();
        if slots.is_empty() {
            return Vec::new();
        }
        let count = slots.len();
        let start = self.rotation % count;
        self.rotation = self.rotation.wrapping_add(1);
        let mut progress = true;
        while free > 0 && progress {
            progress = false;
            for offset in 0..count {
                let (_, given, room) = &mut slots[(start + offset) % count];
                if free > 0 && *given < *room {
                    *given += 1;
                    free -= 1;
                    progress = true;
                }
            }
        }
        slots
            .into_iter()
            .filter(|(_, given, _)| *given > 0)
            .map(|(endpoint, given, _)| (endpoint, u32::try_from(given).unwrap_or(u32::MAX)))
            .collect()
    }

    /// Takes a claim round's result: `asked` is what [`DispatchState::budget`] gave, `claimed`
    /// the endpoints of the deliveries claimed (each is now in flight), `next_due` the store's
    /// hint. Sets the next claim time.
    pub(crate) fn claimed(
        &mut self,
        asked: &[(String, u32)],
        claimed: &[&str],
        next_due: Option<UnixMillis>,
        now: UnixMillis,
    ) -> AfterClaim {
        self.failures = 0;
        let mut got: HashMap<&str, u32> = HashMap::new();
        for endpoint in claimed {
            *got.entry(endpoint).or_default() += 1;
            self.in_flight += 1;
            *self.per_endpoint.entry((*endpoint).to_owned()).or_default() += 1;
        }
        let poll = now.plus_millis(millis(self.poll_interval));
        self.next_claim = next_due.map_or(poll, |due| due.max(now).min(poll));
        let filled = asked
            .iter()
            .any(|(endpoint, slots)| got.get(endpoint.as_str()).copied().unwrap_or(0) >= *slots);
        if filled && self.in_flight < self.max_in_flight {
            self.next_claim = now;
            AfterClaim::ClaimAgain
        } else {
            AfterClaim::Wait
        }
    }

    /// A claim failed (the store is unavailable): back off.
    pub(crate) fn claim_failed(&mut self, now: UnixMillis) -> Duration {
        let wait = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(self.failures.min(16)))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        self.next_claim = now.plus_millis(millis(wait));
        wait
    }

    /// An attempt on `endpoint` ended (recorded or not): its slot is free.
    pub(crate) fn finished(&mut self, endpoint: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(count) = self.per_endpoint.get_mut(endpoint) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_endpoint.remove(endpoint);
            }
        }
    }

    /// Something may be claimable now (a wake-up): claim at once.
    pub(crate) fn wake(&mut self, now: UnixMillis) {
        if self.failures == 0 {
            self.next_claim = self.next_claim.min(now);
        }
    }

    /// How long to wait before the next claim.
    pub(crate) fn wait(&self, now: UnixMillis) -> Duration {
        Duration::from_millis(u64::try_from(self.next_claim.millis_since(now)).unwrap_or(0))
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
