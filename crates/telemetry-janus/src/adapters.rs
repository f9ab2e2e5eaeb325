//! The adapters of every Janus server that reports: events routed by `emitter`, at most
//! `max_emitters` servers with state, servers without sessions or rooms forgotten.
//!
//! A forgotten server that reports again gets a new adapter that carries on from where the
//! forgotten one stopped, in the two things that must never go back: its snapshots' generation
//! (the store keeps a server's newest generation only, so a new adapter counting from 0 would
//! have its states ignored, and lose its calls at the next restart) and the start of its last
//! room (a room started again in the microsecond its predecessor started or ended would derive
//! the same sid). The generation follows the highest over every server; the last room start is
//! remembered per forgotten server, for at most `max_emitters` of them.

use std::collections::{BTreeMap, HashMap};

use telemetry_core::UnixMillis;

use crate::adapter::{Adapter, Applied, Counters, Emitted, RestoreError, Snapshot};
use crate::config::AdapterConfig;
use crate::event::{Event, EventError, Micros, error};

/// Every Janus server's adapter.
#[derive(Debug)]
pub struct Adapters {
    config: AdapterConfig,
    adapters: BTreeMap<String, Adapter>,
    /// Counters of adapters forgotten, and refusals of new servers.
    retired: Counters,
    /// The highest snapshot generation handed out or restored, over every server: a new
    /// adapter's snapshots follow it. Every adapter's own generation is at or below it (each
    /// starts from it and counts only through `take_snapshots`), so forgetting one loses none.
    generation: u64,
    /// The start of the last room of servers whose adapter was forgotten (at most
    /// `max_emitters`, the earliest dropped first): a new adapter's rooms start after it.
    last_room_starts: HashMap<String, Micros>,
}

impl Adapters {
    /// No adapter yet.
    pub fn new(config: AdapterConfig) -> Self {
        Self {
            config,
            adapters: BTreeMap::new(),
            retired: Counters::default(),
            generation: 0,
            last_room_starts: HashMap::new(),
        }
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
        let last_room_start = self.last_room_starts.remove(&event.emitter).unwrap_or(0);
        let mut adapter =
            Adapter::carrying_on(&event.emitter, self.config, self.generation, last_room_start);
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

    /// Restores a server's adapter from its snapshot, at `now` (see [`Adapter::restore`]);
    /// returns whether an adapter was made. Snapshots without sessions and rooms, and those
    /// beyond `max_emitters`, make none: their generation and last room start are remembered,
    /// as a forgotten adapter's are. Give every stored snapshot, including those.
    ///
    /// # Errors
    ///
    /// The snapshot cannot be read (its generation is remembered all the same).
    pub fn restore(&mut self, snapshot: &Snapshot, now: UnixMillis) -> Result<bool, RestoreError> {
        self.generation = self.generation.max(snapshot.generation);
        let adapter = Adapter::restore(snapshot, self.config, now)?;
        if adapter.is_empty() || self.adapters.len() >= self.config.limits.max_emitters {
            self.remember_last_room_start(&snapshot.emitter, adapter.last_room_start());
            return Ok(false);
        }
        self.adapters.insert(snapshot.emitter.clone(), adapter);
        Ok(true)
    }

    /// The snapshots of the adapters whose state changed since their last one; then forgets the
    /// adapters left without sessions and rooms (their last snapshot, empty, is among these).
    pub fn take_snapshots(&mut self) -> Vec<Snapshot> {
        let snapshots: Vec<Snapshot> =
            self.adapters.values_mut().filter_map(Adapter::take_snapshot).collect();
        self.generation =
            snapshots.iter().map(|snapshot| snapshot.generation).fold(self.generation, u64::max);
        self.forget_empty();
        snapshots
    }

    /// Forgets adapters without sessions and rooms whose state has been handed out,
    /// remembering their last room start.
    fn forget_empty(&mut self) {
        let mut forgotten = Vec::new();
        self.adapters.retain(|emitter, adapter| {
            let keep = !adapter.is_empty() || adapter.is_dirty();
            if !keep {
                forgotten.push((emitter.clone(), adapter.counters(), adapter.last_room_start()));
            }
            keep
        });
        for (emitter, counters, last_room_start) in forgotten {
            self.retired.add(&counters);
            self.remember_last_room_start(&emitter, last_room_start);
        }
    }

    /// Remembers a forgotten server's last room start; with `max_emitters` remembered, the
    /// earliest is dropped (a server that has been quiet longest, or whose clock is behind).
    fn remember_last_room_start(&mut self, emitter: &str, last_room_start: Micros) {
        if last_room_start == 0 || self.config.limits.max_emitters == 0 {
            return;
        }
        if !self.last_room_starts.contains_key(emitter)
            && self.last_room_starts.len() >= self.config.limits.max_emitters
        {
            let earliest = self
                .last_room_starts
                .iter()
                .min_by_key(|(emitter, start)| (**start, emitter.as_str()))
                .map(|(emitter, _)| emitter.clone());
            if let Some(earliest) = earliest {
                self.last_room_starts.remove(&earliest);
            }
        }
        let kept = self.last_room_starts.entry(emitter.to_owned()).or_insert(0);
        *kept = (*kept).max(last_room_start);
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

#[cfg(test)]
mod tests;
