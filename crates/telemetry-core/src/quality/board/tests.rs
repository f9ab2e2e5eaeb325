//! The board's answers to a subscriber that looked before: a change of its upstream's kinds, a
//! removal and a new entry are seen at the next look, a subscriber is listed again on an entry
//! made after its last look, and another upstream in trouble that shares its upstream's
//! presence slot changes nothing.

use std::sync::Arc;

use super::{Seen, UpstreamBoard};

/// Two track ids that share a presence slot, so that the board cannot tell from the slot alone
/// that the first has no entry while the second has one.
fn same_slot(board: &UpstreamBoard) -> (String, String) {
    let first = "TR_first".to_owned();
    let slot = std::ptr::from_ref(board.presence(&first));
    let second = (0..)
        .map(|index| format!("TR_other{index}"))
        .find(|id| std::ptr::eq(board.presence(id), slot))
        .expect("4,096 slots");
    (first, second)
}

#[test]
fn a_subscriber_that_looked_before_sees_every_change_of_its_upstream() {
    let board = UpstreamBoard::default();
    let (track, other) = same_slot(&board);
    let subscriber: Arc<str> = Arc::from("PA_sub");
    let mut seen = Seen::default();
    // Another upstream in trouble: the board is not empty, this track has no entry.
    board.set(&other, 0b10);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0);

    board.set(&track, 0b01);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0b01);
    assert_eq!(board.affected(&track), ["PA_sub"]);
    // Looked again with nothing changed: the same answer, listed once.
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0b01);
    assert_eq!(board.affected_count(&track), 1);

    board.set(&track, 0b11);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0b11);

    // The other entry of the slot goes: the answer for this track stays right.
    board.set(&other, 0);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0b11);

    // Removed, then in trouble again: a new entry, on which the subscriber is listed again.
    board.set(&track, 0);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0);
    board.set(&track, 0b01);
    assert_eq!(board.affected_count(&track), 0);
    assert_eq!(board.reached(&track, &subscriber, &mut seen), 0b01);
    assert_eq!(board.affected(&track), ["PA_sub"]);
}

#[test]
fn a_removal_and_a_new_entry_between_two_looks_relist_the_subscriber() {
    let board = UpstreamBoard::default();
    let subscriber: Arc<str> = Arc::from("PA_sub");
    let mut seen = Seen::default();
    board.set("TR_up", 0b01);
    assert_eq!(board.reached("TR_up", &subscriber, &mut seen), 0b01);
    // Between two samples of the subscriber the trouble ends and starts again with the same
    // kinds: the answer is the same, but the new entry lists nobody yet.
    board.set("TR_up", 0);
    board.set("TR_up", 0b01);
    assert_eq!(board.reached("TR_up", &subscriber, &mut seen), 0b01);
    assert_eq!(board.affected("TR_up"), ["PA_sub"]);
    // A restored entry counts as a change too.
    let other: Arc<str> = Arc::from("PA_other");
    let mut other_seen = Seen::default();
    assert_eq!(board.reached("TR_up", &other, &mut other_seen), 0b01);
    board.restore("TR_up", 0b10, &[]);
    assert_eq!(board.reached("TR_up", &other, &mut other_seen), 0b11);
    assert_eq!(board.affected("TR_up"), ["PA_sub", "PA_other"]);
}
