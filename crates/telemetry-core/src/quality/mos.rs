//! A MOS estimate for audio from network conditions: the E-model of ITU-T G.107 (06/2015), its
//! R-factor mapped to a mean opinion score with G.107's Annex B formula.
//!
//! # The formula
//!
//! `R = Ro − Is − Id − Ie,eff + A` (G.107 §7), where
//!
//! - `Ro − Is`, the basic signal-to-noise ratio less the impairments simultaneous with speech, is
//!   computed with G.107 §7.2 and §7.3 from the default values of Table 1 (send and receive
//!   loudness ratings 8 and 2 dB, sidetone masking 15 dB, circuit noise −70 dBm0p, room noise
//!   35 dB(A) on both sides, qdu 1, ...): `No ≈ −61.18 dBm0p`, `Ro ≈ 94.77`, `Is ≈ 1.41` (its
//!   `Ist` term evaluated at the call's delay, as G.107 does for `STMRo`).
//! - `Id = Idte + Idle + Idd` (§7.4) at one mouth-to-ear delay `Ta`, with G.107's usual
//!   simplification that the echo paths have the same delay (`T = Ta`, `Tr = 2·Ta`) and its
//!   default echo losses (`TELR` 65 dB, `WEPL` 110 dB). `Idd` is §7.4's delay impairment
//!   (`0` up to 100 ms, then `25·((1 + X⁶)^⅙ − 3·(1 + (X/3)⁶)^⅙ + 2)`, `X = log2(Ta/100)`).
//! - `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)` (§7.5) with the codec's
//!   equipment impairment `Ie` and packet-loss robustness `Bpl` ([`Codec`]), `Ppl` the packet loss
//!   in percent, and `BurstR = 1`: the loss is taken as random, as receivers' statistics give a
//!   rate and not the lengths of bursts.
//! - `A = 0`: no advantage of access is credited.
//!
//! `R` is mapped with G.107 Annex B: `MOS = 1 + 0.035·R + R·(R − 60)·(100 − R)·7·10⁻⁶`
//! for `0 < R < 100`, 1 below, 4.5 above. The polynomial dips to 0.99 for `0 < R < 6.5`; the
//! estimate is held at 1 there, so that MOS stays within `[1, 4.5]` and never rises as `R` falls.
//! With every default (no delay, no loss, `Ie = 0`) `R ≈ 93.2` and `MOS ≈ 4.41`, G.107's own
//! reference point.
//!
//! # Jitter and delay
//!
//! The E-model has no jitter term. As is common in VoIP monitoring (for instance R. G. Cole and
//! J. H. Rosenbluth, "Voice over IP performance monitoring", ACM SIGCOMM CCR 31(2), 2001, who map
//! measured network figures onto G.107's delay and loss terms), jitter is counted as the delay of
//! the receiver's jitter buffer it forces: the buffer is taken to hold twice the RFC 3550
//! interarrival jitter (which is a mean deviation), so `Ta = one-way network delay + 2 · jitter +
//! the codec's frame and look-ahead delay` ([`Codec::delay_ms`]). Packets late for the buffer are
//! not counted as lost: only the loss the receiver reports is. The one-way network delay is the
//! caller's to give; from a round-trip time, half of it ([`Conditions::from_rtt`]).
//!
//! These are estimates on G.107's narrowband scale (`R` at most 93.2 without an advantage
//! factor): a wideband codec such as Opus is rated no higher than G.711 here.

/// The E-model parameters of an audio codec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Codec {
    /// The codec's name, for messages and docs.
    pub name: &'static str,
    /// Equipment impairment factor `Ie` (G.107 §7.5): the codec's own impairment without loss.
    pub ie: f64,
    /// Packet-loss robustness factor `Bpl` (G.107 §7.5): higher is more robust.
    pub bpl: f64,
    /// Delay the codec adds to the mouth-to-ear path (one frame and its look-ahead), in
    /// milliseconds.
    pub delay_ms: f64,
}

impl Codec {
    /// G.711 without packet-loss concealment: `Ie = 0`, `Bpl = 4.3` for random loss (ITU-T G.113
    /// Appendix I); 20 ms frames.
    pub const G711: Codec = Codec { name: "G.711", ie: 0.0, bpl: 4.3, delay_ms: 20.0 };

    /// G.711 with packet-loss concealment (G.711 Appendix I): `Ie = 0`, `Bpl = 25.1` for random
    /// loss (ITU-T G.113 Appendix I); 20 ms frames. WebRTC's receivers conceal lost
    /// packets of every codec, so this is the value for `audio/PCMU` and `audio/PCMA`.
    pub const G711_PLC: Codec =
        Codec { name: "G.711 with PLC", ie: 0.0, bpl: 25.1, delay_ms: 20.0 };

    /// Opus, as WebRTC uses it (20 ms frames, 6.5 ms look-ahead). ITU-T G.113 gives no values for
    /// Opus; these are assumptions: `Ie = 0`, as at the bit rates of WebRTC (24 kbit/s and more)
    /// Opus is at least as good as G.711 and the narrowband E-model rates nothing above G.711;
    /// `Bpl = 25.1`, the robustness of G.711 with concealment, since Opus conceals losses too
    /// (its in-band FEC, when on, is not credited).
    pub const OPUS: Codec = Codec { name: "Opus", ie: 0.0, bpl: 25.1, delay_ms: 26.5 };

    /// Returns the parameters for an audio MIME type (`audio/opus`, `audio/PCMU`, `audio/PCMA`,
    /// case-insensitive), or `None` for a codec without parameters here.
    pub fn from_mime(mime: &str) -> Option<Codec> {
        let subtype = mime.strip_prefix("audio/").or_else(|| mime.strip_prefix("AUDIO/"))?;
        if subtype.eq_ignore_ascii_case("opus") {
            Some(Codec::OPUS)
        } else if subtype.eq_ignore_ascii_case("pcmu") || subtype.eq_ignore_ascii_case("pcma") {
            Some(Codec::G711_PLC)
        } else {
            None
        }
    }
}

/// The network conditions of an audio stream over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Conditions {
    /// One-way network delay, in milliseconds.
    pub one_way_delay_ms: f64,
    /// Packets lost, in percent of packets sent (0 to 100).
    pub loss_percent: f64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
}

impl Conditions {
    /// Conditions whose one-way delay is half of `rtt_ms`, the round-trip time.
    pub fn from_rtt(rtt_ms: f64, loss_percent: f64, jitter_ms: f64) -> Self {
        Self { one_way_delay_ms: rtt_ms / 2.0, loss_percent, jitter_ms }
    }

    /// The mouth-to-ear delay `Ta` these conditions give with `codec`: network delay, a jitter
    /// buffer of twice the jitter, the codec's delay. Negative and non-finite inputs count as 0.
    pub fn mouth_to_ear_ms(&self, codec: &Codec) -> f64 {
        non_negative(self.one_way_delay_ms) + 2.0 * non_negative(self.jitter_ms) + codec.delay_ms
    }
}

/// An E-model estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The transmission rating factor `R` (at most about 93.2 here).
    pub r: f64,
    /// The mean opinion score, 1 to 4.5.
    pub mos: f64,
}

/// Estimates `R` and MOS for audio with `codec` under `conditions` (see the module's docs).
pub fn estimate(codec: &Codec, conditions: &Conditions) -> Estimate {
    let delay = conditions.mouth_to_ear_ms(codec);
    let loss = non_negative(conditions.loss_percent).min(100.0);
    let r = r_factor(delay, codec.ie, codec.bpl, loss);
    Estimate { r, mos: mos_from_r(r) }
}

/// G.107's `R` for a mouth-to-ear delay `ta_ms` (with `T = Ta`, `Tr = 2·Ta`), a codec's `ie` and
/// `bpl`, random packet loss `loss_percent`, and every other parameter at its default.
pub fn r_factor(ta_ms: f64, ie: f64, bpl: f64, loss_percent: f64) -> f64 {
    let ta = non_negative(ta_ms);
    let no = noise_floor();
    let ro = 15.0 - 1.5 * (defaults::SLR + no);
    let is = simultaneous_impairment(ro, no, ta);
    let id = talker_echo(no, ta) + listener_echo(ro, 2.0 * ta) + pure_delay(ta);
    let ie_eff = effective_equipment_impairment(ie, bpl, loss_percent);
    ro - is - id - ie_eff
}

/// G.107 Annex B: MOS from `R`, held at 1 where the polynomial dips below it.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).clamp(1.0, 4.5)
    }
}

/// G.107's default values (Table 1) of the parameters not measured here.
mod defaults {
    /// Send loudness rating, dB.
    pub(super) const SLR: f64 = 8.0;
    /// Receive loudness rating, dB.
    pub(super) const RLR: f64 = 2.0;
    /// Sidetone masking rating, dB.
    pub(super) const STMR: f64 = 15.0;
    /// Listener sidetone rating, dB (`STMR + D`, `D = 3`).
    pub(super) const LSTR: f64 = 18.0;
    /// D-value of the telephone, send side.
    pub(super) const DS: f64 = 3.0;
    /// Talker echo loudness rating, dB.
    pub(super) const TELR: f64 = 65.0;
    /// Weighted echo path loss, dB.
    pub(super) const WEPL: f64 = 110.0;
    /// Quantizing distortion units.
    pub(super) const QDU: f64 = 1.0;
    /// Circuit noise referred to the 0 dBr point, dBm0p.
    pub(super) const NC: f64 = -70.0;
    /// Noise floor at the receive side, dBmp.
    pub(super) const NFOR: f64 = -64.0;
    /// Room noise at the send side, dB(A).
    pub(super) const PS: f64 = 35.0;
    /// Room noise at the receive side, dB(A).
    pub(super) const PR: f64 = 35.0;
}

/// G.107 §7.2: the total noise `No`, about −61.18 dBm0p at the defaults.
fn noise_floor() -> f64 {
    use defaults::{DS, LSTR, NC, NFOR, PR, PS, RLR, SLR};
    let olr = SLR + RLR;
    let nos = PS - SLR - DS - 100.0 + 0.004 * (PS - olr - DS - 14.0).powi(2);
    let pre = PR + 10.0 * (1.0 + 10f64.powf((10.0 - LSTR) / 10.0)).log10();
    let nor = RLR - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = NFOR + RLR;
    10.0 * (10f64.powf(NC / 10.0)
        + 10f64.powf(nos / 10.0)
        + 10f64.powf(nor / 10.0)
        + 10f64.powf(nfo / 10.0))
    .log10()
}

/// G.107 §7.3: `Is = Iolr + Ist + Iq`, for an echo path delay `t` (ms).
fn simultaneous_impairment(ro: f64, no: f64, t: f64) -> f64 {
    use defaults::{QDU, RLR, SLR, STMR, TELR};
    let olr = SLR + RLR;
    let xolr = olr + 0.2 * (64.0 + no - RLR);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro =
        -10.0 * (10f64.powf(-STMR / 10.0) + (-t / 4.0).exp() * 10f64.powf(-TELR / 10.0)).log10();
    let ist = 12.0 * (1.0 + ((stmro - 13.0) / 6.0).powi(8)).powf(1.0 / 8.0)
        - 28.0 * (1.0 + ((stmro + 1.0) / 19.4).powi(35)).powf(1.0 / 35.0)
        - 13.0 * (1.0 + ((stmro - 3.0) / 33.0).powi(13)).powf(1.0 / 13.0)
        + 29.0;
    let q = 37.0 - 15.0 * QDU.log10();
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10();
    iolr + ist + iq
}

/// G.107 §7.4: the talker echo impairment `Idte` for a delay `t` (ms).
fn talker_echo(no: f64, t: f64) -> f64 {
    use defaults::{RLR, TELR};
    let terv =
        TELR - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
    let roe = -1.5 * (no - RLR);
    let re = 80.0 + 2.5 * (terv - 14.0);
    let difference = roe - re;
    (difference / 2.0 + (difference * difference / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp())
}

/// G.107 §7.4: the listener echo impairment `Idle` for a round-trip delay `tr`
/// (ms).
fn listener_echo(ro: f64, tr: f64) -> f64 {
    let rle = 10.5 * (defaults::WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let difference = ro - rle;
    difference / 2.0 + (difference * difference / 4.0 + 169.0).sqrt()
}

/// G.107 §7.4: the impairment of a long absolute delay `Idd`, for `ta` (ms).
fn pure_delay(ta: f64) -> f64 {
    if ta <= 100.0 {
        return 0.0;
    }
    let x = (ta / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// G.107 §7.5: `Ie,eff` for random loss (`BurstR = 1`).
fn effective_equipment_impairment(ie: f64, bpl: f64, loss_percent: f64) -> f64 {
    ie + (95.0 - ie) * loss_percent / (loss_percent + bpl)
}

fn non_negative(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 { value } else { 0.0 }
}

#[cfg(test)]
mod tests;
