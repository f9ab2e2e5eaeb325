//! Call quality, computed from the same samples as the honest rates: for now the E-model MOS
//! estimate of audio ([`mos`]), pure functions that nothing feeds into outputs yet.

pub mod mos;
