//! Integration tests of the core's public API: LiveKit's own scenarios (reference §6.1–§6.3),
//! every row and flag of the method table (§2.4), coalescing properties and honest rates.

mod coalesce_props;
mod events_scenarios;
mod harness;
mod honest_rates;
mod hostile_volume;
mod method_table;
mod ordering;
mod quality;
mod quality_restore;
mod stats_scenarios;
mod worker_lifecycle;
