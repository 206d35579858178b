//! Property tests of hookwire-core's parsers of untrusted input: the wire contract
//! ([`hookwire_core::event::decode`]), the target policy ([`hookwire_core::TargetPolicy`])
//! and payload filters, whose cost must stay within what the parser bounded.
//! The `fuzz/` folder at the workspace root drives the same entry points with cargo-fuzz.
//!
//! Case counts stay modest so that CI stays fast; `PROPTEST_CASES` does not raise them.

mod config;
mod event;
mod filter;
mod target;

/// Cases per property.
const CASES: u32 = 256;
