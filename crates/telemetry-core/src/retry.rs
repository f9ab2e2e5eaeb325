//! The webhook retry schedule: how long to wait after a failed attempt, with jitter, honouring a
//! receiver's `Retry-After` within bounds, and when to give up (the delivery is then dead: kept,
//! visible and replayable, never dropped).

use std::time::Duration;

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How much a scheduled wait is varied, as a fraction either way: spreads the retries of many
/// deliveries that failed together (an endpoint coming back up is not hit by all at once).
pub const JITTER: f64 = 0.2;

/// Waits between attempts.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySchedule {
    waits: Vec<Duration>,
}

impl RetrySchedule {
    /// A schedule: the first attempt at once, then one more attempt after each wait.
    pub fn new(waits: Vec<Duration>) -> Self {
        Self { waits }
    }

    /// The most attempts a delivery gets.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.waits.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// After `attempts` failed attempts, how long to wait before the next one; `None` when none
    /// is left. `retry_after` is the receiver's `Retry-After`, honoured (up to
    /// [`MAX_RETRY_AFTER`]) instead of the schedule; `random` in `[0, 1)` draws the jitter.
    pub fn next_wait(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        let scheduled = *self.waits.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
        if let Some(retry_after) = retry_after {
            return Some(retry_after.min(MAX_RETRY_AFTER));
        }
        let factor = 1.0 + JITTER * (2.0 * random.clamp(0.0, 1.0) - 1.0);
        Some(scheduled.mul_f64(factor))
    }

    /// The total of the scheduled waits: how long a delivery can stay pending.
    pub fn span(&self) -> Duration {
        self.waits.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> RetrySchedule {
        RetrySchedule::new(vec![
            Duration::from_secs(1),
            Duration::from_secs(5),
            Duration::from_secs(30),
        ])
    }

    #[test]
    fn waits_follow_the_schedule_then_give_up() {
        let schedule = schedule();
        assert_eq!(schedule.max_attempts(), 4);
        assert_eq!(
            schedule.next_wait(0, None, 0.5),
            None,
            "no failed attempt, nothing to wait for"
        );
        assert_eq!(schedule.next_wait(1, None, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(schedule.next_wait(2, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(schedule.next_wait(3, None, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(schedule.next_wait(4, None, 0.5), None, "dead after the last attempt");
        assert_eq!(schedule.span(), Duration::from_secs(36));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = schedule();
        assert_eq!(schedule.next_wait(3, None, 0.0), Some(Duration::from_secs(24)));
        assert_eq!(schedule.next_wait(3, None, 1.0), Some(Duration::from_secs(36)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_an_hour_but_never_past_the_last_attempt() {
        let schedule = schedule();
        assert_eq!(
            schedule.next_wait(1, Some(Duration::from_secs(7)), 0.9),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            schedule.next_wait(1, Some(Duration::from_secs(86_400)), 0.5),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(schedule.next_wait(4, Some(Duration::from_secs(1)), 0.5), None);
    }
}
