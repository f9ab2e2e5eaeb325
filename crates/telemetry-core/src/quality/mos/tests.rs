//! The E-model against G.107's published reference points, and properties: MOS within
//! `[1, 4.5]`, monotone in `R`, never raised by more loss, delay or jitter.

use proptest::prelude::*;

use crate::quality::mos::{Codec, Conditions, estimate, mos_from_r, r_factor};

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not within {tolerance} of {expected}"
    );
}

#[test]
fn every_default_gives_r_93_2_and_mos_4_41() {
    // G.107 §7: "the default values ... result in a very high quality with a rating factor of
    // R = 93.2"; Annex B maps it to MOS 4.41.
    let r = r_factor(0.0, 0.0, 1.0, 0.0);
    close(r, 93.2, 0.05);
    close(mos_from_r(r), 4.41, 0.005);
}

#[test]
fn the_r_to_mos_mapping_matches_annex_b() {
    // G.107 Annex B.
    close(mos_from_r(50.0), 2.575, 0.005);
    close(mos_from_r(60.0), 3.1, 1e-9);
    close(mos_from_r(70.0), 3.596, 0.005);
    close(mos_from_r(80.0), 4.024, 0.005);
    close(mos_from_r(90.0), 4.339, 0.005);
    assert_eq!(mos_from_r(100.0), 4.5);
    assert_eq!(mos_from_r(120.0), 4.5);
    assert_eq!(mos_from_r(0.0), 1.0);
    assert_eq!(mos_from_r(-20.0), 1.0);
    assert_eq!(mos_from_r(f64::NAN), 1.0);
    // Where the polynomial dips below 1 (0 < R < 6.5), the estimate is held at 1.
    assert_eq!(mos_from_r(3.0), 1.0);
}

#[test]
fn delay_costs_about_what_cole_and_rosenbluth_fitted() {
    // Cole and Rosenbluth (2001) fitted G.107's Id at its defaults with
    // Id ≈ 0.024·Ta + 0.11·(Ta − 177.3)·H(Ta − 177.3); the full terms stay within about three
    // R points of that fit up to 400 ms (the fit's own error grows with the delay).
    let fit = |ta: f64| 93.2 - 0.024 * ta - 0.11 * (ta - 177.3).max(0.0);
    for ta in [50.0, 100.0, 150.0, 200.0, 300.0, 400.0] {
        close(r_factor(ta, 0.0, 1.0, 0.0), fit(ta), 3.5);
    }
}

#[test]
fn loss_costs_what_the_codecs_bpl_says() {
    // G.107 §7.5: at Ppl = Bpl, Ie,eff = Ie + (95 − Ie) / 2.
    let clean = r_factor(0.0, 0.0, 25.1, 0.0);
    close(clean - r_factor(0.0, 0.0, 25.1, 25.1), 47.5, 1e-9);
    // G.711 without concealment suffers far more from 2 % loss than with it.
    let without = r_factor(0.0, Codec::G711.ie, Codec::G711.bpl, 2.0);
    let with = r_factor(0.0, Codec::G711_PLC.ie, Codec::G711_PLC.bpl, 2.0);
    close(clean - without, 95.0 * 2.0 / 6.3, 1e-9);
    close(clean - with, 95.0 * 2.0 / 27.1, 1e-9);
}

#[test]
fn a_good_opus_call_rates_high_and_a_bad_one_low() {
    let good = estimate(&Codec::OPUS, &Conditions::from_rtt(60.0, 0.2, 3.0));
    assert!(good.mos > 4.3, "{good:?}");
    let bad = estimate(&Codec::OPUS, &Conditions::from_rtt(600.0, 10.0, 60.0));
    assert!(bad.mos < 2.6, "{bad:?}");
}

#[test]
fn codecs_are_found_by_mime() {
    assert_eq!(Codec::from_mime("audio/opus"), Some(Codec::OPUS));
    assert_eq!(Codec::from_mime("audio/OPUS"), Some(Codec::OPUS));
    assert_eq!(Codec::from_mime("audio/PCMU"), Some(Codec::G711_PLC));
    assert_eq!(Codec::from_mime("audio/pcma"), Some(Codec::G711_PLC));
    assert_eq!(Codec::from_mime("audio/red"), None);
    assert_eq!(Codec::from_mime("video/VP8"), None);
}

#[test]
fn odd_inputs_give_a_score_in_range() {
    for conditions in [
        Conditions { one_way_delay_ms: f64::NAN, loss_percent: f64::INFINITY, jitter_ms: -5.0 },
        Conditions { one_way_delay_ms: 1e9, loss_percent: 400.0, jitter_ms: 1e9 },
        Conditions { one_way_delay_ms: -1.0, loss_percent: -1.0, jitter_ms: f64::NAN },
    ] {
        let estimate = estimate(&Codec::OPUS, &conditions);
        assert!((1.0..=4.5).contains(&estimate.mos), "{conditions:?}: {estimate:?}");
    }
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::OPUS), Just(Codec::G711), Just(Codec::G711_PLC)]
}

fn conditions() -> impl Strategy<Value = Conditions> {
    (0.0..2000.0f64, 0.0..100.0f64, 0.0..500.0f64).prop_map(
        |(one_way_delay_ms, loss_percent, jitter_ms)| Conditions {
            one_way_delay_ms,
            loss_percent,
            jitter_ms,
        },
    )
}

proptest! {
    #[test]
    fn mos_stays_within_1_and_4_5(codec in codec(), conditions in conditions()) {
        let estimate = estimate(&codec, &conditions);
        prop_assert!((1.0..=4.5).contains(&estimate.mos), "{:?}", estimate);
    }

    #[test]
    fn mos_is_monotone_in_r(r in -50.0..150.0f64, more in 0.0..50.0f64) {
        prop_assert!(mos_from_r(r) <= mos_from_r(r + more));
    }

    #[test]
    fn more_loss_never_raises_mos(
        codec in codec(),
        conditions in conditions(),
        more in 0.0..100.0f64,
    ) {
        let worse = Conditions { loss_percent: conditions.loss_percent + more, ..conditions };
        prop_assert!(estimate(&codec, &worse).mos <= estimate(&codec, &conditions).mos);
        prop_assert!(estimate(&codec, &worse).r <= estimate(&codec, &conditions).r);
    }

    #[test]
    fn more_delay_never_raises_mos(
        codec in codec(),
        conditions in conditions(),
        more in 0.0..2000.0f64,
    ) {
        let worse =
            Conditions { one_way_delay_ms: conditions.one_way_delay_ms + more, ..conditions };
        prop_assert!(estimate(&codec, &worse).mos <= estimate(&codec, &conditions).mos);
        prop_assert!(estimate(&codec, &worse).r <= estimate(&codec, &conditions).r);
    }

    #[test]
    fn more_jitter_never_raises_mos(
        codec in codec(),
        conditions in conditions(),
        more in 0.0..500.0f64,
    ) {
        let worse = Conditions { jitter_ms: conditions.jitter_ms + more, ..conditions };
        prop_assert!(estimate(&codec, &worse).mos <= estimate(&codec, &conditions).mos);
    }
}
