//! The adapters of every Janus server that reports: events routed by `emitter`, at most
//! `max_emitters` servers with state, servers without sessions or rooms forgotten.

use std::collections::BTreeMap;

use telemetry_core::UnixMillis;

use crate::adapter::{Adapter, Applied, Counters, Emitted, RestoreError, Snapshot};
use crate::config::AdapterConfig;
use crate::event::{Event, EventError, error};

/// Every Janus server's adapter.
#[derive(Debug)]
pub struct Adapters {
    config: AdapterConfig,
    adapters: BTreeMap<String, Adapter>,
    /// Counters of adapters forgotten, and refusals of new servers.
    retired: Counters,
}

impl Adapters {
    /// No adapter yet.
    pub fn new(config: AdapterConfig) -> Self {
        Self { config, adapters: BTreeMap::new(), retired: Counters::default() }
    }

    /// The settings.
    pub fn config(&self) -> &AdapterConfig {
        &self.config
    }

    /// Applies an event to its server's adapter (made if new), appending the calls it causes.
    ///
    /// # Errors
    ///
    /// As [`Adapter::apply`]; and a new server's event while `max_emitters` servers have state.
    pub fn apply(&mut self, event: &Event, out: &mut Vec<Emitted>) -> Result<Applied, EventError> {
        if let Some(adapter) = self.adapters.get_mut(&event.emitter) {
            return adapter.apply(event, out);
        }
        let max = self.config.limits.max_emitters;
        if self.adapters.len() >= max {
            self.forget_empty();
        }
        if self.adapters.len() >= max {
            self.retired.refused_emitters += 1;
            return Err(error(
                "emitter",
                format!(
                    "a new Janus server, but `janus.max_emitters` ({max}) servers have state already"
                ),
            ));
        }
        let mut adapter = Adapter::new(&event.emitter, self.config);
        let applied = adapter.apply(event, out);
        self.adapters.insert(event.emitter.clone(), adapter);
        applied
    }

    /// Lets time pass for every adapter ([`Adapter::tick`]).
    pub fn tick(&mut self, now: UnixMillis, out: &mut Vec<Emitted>) {
        for adapter in self.adapters.values_mut() {
            adapter.tick(now, out);
        }
    }

    /// Restores a server's adapter from its snapshot, at `now` (see [`Adapter::restore`]).
    /// Snapshots beyond `max_emitters` are not restored.
    ///
    /// # Errors
    ///
    /// The snapshot cannot be read.
    pub fn restore(&mut self, snapshot: &Snapshot, now: UnixMillis) -> Result<bool, RestoreError> {
        let adapter = Adapter::restore(snapshot, self.config, now)?;
        if adapter.is_empty() || self.adapters.len() >= self.config.limits.max_emitters {
            return Ok(false);
        }
        self.adapters.insert(snapshot.emitter.clone(), adapter);
        Ok(true)
    }

    /// The snapshots of the adapters whose state changed since their last one; then forgets the
    /// adapters left without sessions and rooms (their last snapshot, empty, is among these).
    pub fn take_snapshots(&mut self) -> Vec<Snapshot> {
        let snapshots = self.adapters.values_mut().filter_map(Adapter::take_snapshot).collect();
        self.forget_empty();
        snapshots
    }

    /// Forgets adapters without sessions and rooms whose state has been handed out.
    fn forget_empty(&mut self) {
        let retired = &mut self.retired;
        self.adapters.retain(|_, adapter| {
            let keep = !adapter.is_empty() || adapter.is_dirty();
            if !keep {
                retired.add(&adapter.counters());
            }
            keep
        });
    }

    /// Every adapter's counters, those forgotten included.
    pub fn counters(&self) -> Counters {
        let mut counters = self.retired;
        for adapter in self.adapters.values() {
            counters.add(&adapter.counters());
        }
        counters
    }

    /// Sessions and rooms held, over every adapter.
    pub fn sizes(&self) -> (usize, usize) {
        self.adapters
            .values()
            .map(Adapter::sizes)
            .fold((0, 0), |(sessions, rooms), (s, r)| (sessions + s, rooms + r))
    }

    /// The adapters held.
    pub fn len(&self) -> usize {
        self.adapters.len()
    }

    /// Whether no adapter is held.
    pub fn is_empty(&self) -> bool {
        self.adapters.is_empty()
    }

    /// The adapter of `emitter`, if held.
    pub fn get(&self, emitter: &str) -> Option<&Adapter> {
        self.adapters.get(emitter)
    }
}
