//! The dispatcher's state machine with a manual clock.

use std::time::Duration;

use telemetry_core::{Clock as _, ManualClock, UnixMillis};

use super::{AfterClaim, DispatchState};

fn endpoints(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn total(budget: &[(String, u32)]) -> u32 {
    budget.iter().map(|(_, slots)| slots).sum()
}

#[test]
fn the_global_bound_is_shared_fairly_and_the_leftover_rotates() {
    let clock = ManualClock::new(UnixMillis(1_000));
    let mut state = DispatchState::new(10, 100, Duration::from_secs(1), clock.now());
    let names = endpoints(&["a", "b", "c"]);
    let first = state.budget(&names);
    assert_eq!(total(&first), 10);
    let counts: Vec<u32> = first.iter().map(|(_, slots)| *slots).collect();
    assert_eq!(counts, [4, 3, 3], "the first endpoint of this round gets the leftover slot");
    let second = state.budget(&names);
    let b = second.iter().find(|(name, _)| name == "b").expect("b").1;
    assert_eq!(b, 4, "the next round starts at the next endpoint");
}

#[test]
fn the_per_endpoint_bound_caps_one_endpoint_and_the_rest_goes_to_others() {
    let clock = ManualClock::new(UnixMillis(1_000));
    let mut state = DispatchState::new(10, 3, Duration::from_secs(1), clock.now());
    let budget = state.budget(&endpoints(&["hung", "ok"]));
    assert_eq!(budget, [("hung".to_owned(), 3), ("ok".to_owned(), 3)]);
    // The hung endpoint's three requests stay in flight: it gets nothing more.
    state.claimed(&budget, &["hung", "hung", "hung"], None, clock.now());
    let budget = state.budget(&endpoints(&["hung", "ok"]));
    assert_eq!(budget, [("ok".to_owned(), 3)]);
    state.finished("hung");
    let budget = state.budget(&endpoints(&["hung", "ok"]));
    assert!(budget.contains(&("hung".to_owned(), 1)));
}

#[test]
fn nothing_is_asked_for_when_every_slot_is_in_flight() {
    let clock = ManualClock::new(UnixMillis(1_000));
    let mut state = DispatchState::new(2, 2, Duration::from_secs(1), clock.now());
    let budget = state.budget(&endpoints(&["a"]));
    assert_eq!(
        state.claimed(&budget, &["a", "a"], None, clock.now()),
        AfterClaim::Wait,
        "full: nothing more to claim"
    );
    assert!(state.budget(&endpoints(&["a"])).is_empty());
    assert_eq!(state.in_flight(), 2);
    state.finished("a");
    state.finished("a");
    state.finished("a");
    assert_eq!(state.in_flight(), 0, "finishing more than started never underflows");
}

#[test]
fn a_full_claim_asks_again_and_a_short_one_waits_for_the_poll_or_the_next_due() {
    let clock = ManualClock::new(UnixMillis(1_000));
    let mut state = DispatchState::new(100, 100, Duration::from_secs(1), clock.now());
    let names = endpoints(&["a", "b"]);
    let budget = state.budget(&names);
    assert_eq!(total(&budget), 100);
    let claimed_a = vec!["a"; 30];
    assert_eq!(
        state.claimed(&budget, &claimed_a, None, clock.now()),
        AfterClaim::Wait,
        "every endpoint got fewer than it asked: nothing more is due"
    );
    assert_eq!(state.wait(clock.now()), Duration::from_secs(1), "poll");
    let budget = state.budget(&names);
    assert_eq!(total(&budget), 70);
    let asked_b = budget.iter().find(|(name, _)| name == "b").expect("b").1 as usize;
    let claimed_b = vec!["b"; asked_b];
    assert_eq!(
        state.claimed(&budget, &claimed_b, None, clock.now()),
        AfterClaim::ClaimAgain,
        "b got all it asked for and slots are left: there may be more"
    );
    // A due time before the poll shortens the wait; one in the past means now.
    let budget = state.budget(&names);
    state.claimed(&budget, &[], Some(clock.now().plus_millis(250)), clock.now());
    assert_eq!(state.wait(clock.now()), Duration::from_millis(250));
    clock.advance_millis(100);
    assert_eq!(state.wait(clock.now()), Duration::from_millis(150));
    state.claimed(&budget, &[], Some(UnixMillis(0)), clock.now());
    assert_eq!(state.wait(clock.now()), Duration::ZERO);
}

#[test]
fn failed_claims_back_off_and_a_wake_up_does_not_cut_the_backoff() {
    let clock = ManualClock::new(UnixMillis(1_000));
    let mut state = DispatchState::new(10, 10, Duration::from_secs(1), clock.now());
    let waits: Vec<Duration> = (0..8).map(|_| state.claim_failed(clock.now())).collect();
    assert_eq!(waits[0], Duration::from_millis(100));
    assert_eq!(waits[1], Duration::from_millis(200));
    assert_eq!(*waits.last().expect("some"), Duration::from_secs(5), "capped");
    state.wake(clock.now());
    assert_eq!(state.wait(clock.now()), Duration::from_secs(5));
    // A successful claim resets the backoff; then a wake-up means now.
    let budget = state.budget(&endpoints(&["a"]));
    state.claimed(&budget, &[], None, clock.now());
    state.wake(clock.now());
    assert_eq!(state.wait(clock.now()), Duration::ZERO);
}
