//! The cache of loaded (compiled, pre-instantiated) modules, bounded by bytes and evicting the
//! least recently used. An evicted module is only dropped from memory: the engine reloads it
//! from the store on its next use (wasmtime's on-disk compile cache makes that a read, not a
//! compilation). Written by hand because the bound is on the modules' compiled size, which an
//! entry-count LRU crate does not know, and the whole cache is a few dozen lines.

use std::collections::HashMap;
use std::sync::Arc;

use super::LoadedModule;

#[derive(Debug, Default)]
pub(super) struct ModuleCache {
    entries: HashMap<String, (Arc<LoadedModule>, u64)>,
    bytes: u64,
    tick: u64,
}

impl ModuleCache {
    /// The module loaded under `hash`, marked as just used.
    pub fn get(&mut self, hash: &str) -> Option<Arc<LoadedModule>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(hash).map(|(m, used)| {
            *used = tick;
            m.clone()
        })
    }

    /// Adds `module`, then evicts the least recently used modules (never the one just added)
    /// until the cache holds at most `budget` bytes.
    pub fn insert(&mut self, module: Arc<LoadedModule>, budget: u64) {
        self.tick += 1;
        let hash = module.hash.clone();
        if let Some((old, _)) = self.entries.remove(&hash) {
            self.bytes = self.bytes.saturating_sub(old.size_bytes);
        }
        self.bytes = self.bytes.saturating_add(module.size_bytes);
        self.entries.insert(hash.clone(), (module, self.tick));
        while self.bytes > budget {
            let victim = self
                .entries
                .iter()
                .filter(|(h, _)| **h != hash)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| h.clone());
            let Some(victim) = victim else { break };
            if let Some((m, _)) = self.entries.remove(&victim) {
                self.bytes = self.bytes.saturating_sub(m.size_bytes);
                tracing::debug!(module = %victim, "module evicted from the cache");
            }
        }
    }

    /// (modules, bytes) held.
    pub fn usage(&self) -> (usize, u64) {
        (self.entries.len(), self.bytes)
    }
}
