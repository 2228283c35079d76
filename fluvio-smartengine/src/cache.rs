//! Bounds on compiled modules: an in-memory cache evicted least recently
//! used first when it holds more bytes of compiled code than allowed, the
//! same bound on the disk cache directory, and a cap on how many modules
//! compile at once.
//!
//! Every distinct ad hoc module a client sends is compiled and cached; with
//! no bound, a client that sends a new module with each request grows the
//! server's memory and disk without end, and many at once take every core.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use crate::SmartModule;

struct Cached {
    module: SmartModule,
    /// The wasm it was compiled from, to confirm a fingerprint match.
    wasm: Arc<[u8]>,
    /// The wasm's fingerprint, kept so that eviction need not compute it again.
    print: Fingerprint,
    /// Bytes of compiled code (the size of its serialized artifact, once
    /// known) and of the wasm.
    bytes: u64,
    /// Whether `bytes` counts the compiled code yet: a freshly compiled
    /// module's is counted when the compile's thread has serialized it,
    /// after its load returned ([`ModuleCache::add_compiled_bytes`]).
    compiled_counted: bool,
    last_used: u64,
}

/// A cheap summary of wasm bytes: length and CRC-32C. Finding a cached
/// module by it, then comparing the bytes, takes a fraction of the time a
/// SHA-256 of a large module takes (a 1.4 MB module: about 0.1 ms against
/// 0.55 ms), and a new stream with an ad hoc module pays it every time.
/// A CRC is easy to forge, so a match counts only when every byte agrees.
type Fingerprint = (usize, u32);

fn fingerprint(wasm: &[u8]) -> Fingerprint {
    (wasm.len(), crc32c::crc32c(wasm))
}

/// Compiled modules by wasm hash, within a byte budget.
pub(crate) struct ModuleCache {
    budget: u64,
    entries: HashMap<[u8; 32], Cached>,
    /// The hashes of the cached modules with each fingerprint (more than
    /// one only when fingerprints collide).
    by_fingerprint: HashMap<Fingerprint, Vec<[u8; 32]>>,
    total: u64,
    clock: u64,
    /// Compiled sizes that came before their module was cached (its load
    /// was still checking it), by hash. A module whose checks fail never
    /// comes for its size, so these are few, and cleared if they pile up.
    early_sizes: HashMap<[u8; 32], u64>,
}

/// Most compiled sizes kept for modules not cached yet.
const MOST_EARLY_SIZES: usize = 64;

impl ModuleCache {
    pub(crate) fn new(budget: u64) -> ModuleCache {
        ModuleCache {
            budget,
            entries: HashMap::new(),
            by_fingerprint: HashMap::new(),
            total: 0,
            clock: 0,
            early_sizes: HashMap::new(),
        }
    }

    pub(crate) fn get(&mut self, hash: &[u8; 32]) -> Option<&SmartModule> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(hash).map(|entry| {
            entry.last_used = clock;
            &entry.module
        })
    }

    /// The cached module compiled from exactly these bytes, found without
    /// hashing them.
    pub(crate) fn get_by_bytes(&mut self, wasm: &[u8]) -> Option<&SmartModule> {
        let candidates = self.by_fingerprint.get(&fingerprint(wasm))?;
        let hash = *candidates.iter().find(|hash| self.entries.get(*hash).is_some_and(|e| *e.wasm == *wasm))?;
        self.get(&hash)
    }

    /// Adds a module, then evicts the least recently used others until the
    /// cache is within budget. The module just added always stays, so a
    /// module larger than the whole budget still loads (its instances hold
    /// it; the cache just forgets it sooner). The wasm kept beside each
    /// module counts against the budget with its compiled code, whose size
    /// is given here when it is known (a module read from the disk cache)
    /// and later otherwise.
    pub(crate) fn insert(&mut self, hash: [u8; 32], module: SmartModule, wasm: &[u8], compiled_bytes: Option<u64>) {
        self.clock += 1;
        let compiled_bytes = compiled_bytes.or_else(|| self.early_sizes.remove(&hash));
        let bytes = compiled_bytes.unwrap_or(0) + wasm.len() as u64;
        let print = fingerprint(wasm);
        let entry = Cached {
            module,
            wasm: Arc::from(wasm),
            print,
            bytes,
            compiled_counted: compiled_bytes.is_some(),
            last_used: self.clock,
        };
        match self.entries.insert(hash, entry) {
            Some(old) => self.total -= old.bytes,
            None => self.by_fingerprint.entry(print).or_default().push(hash),
        }
        self.total += bytes;
        self.evict_over_budget(hash);
    }

    /// Counts the compiled code of module `hash`, serialized after its load
    /// returned, and evicts others if that takes the cache over budget.
    pub(crate) fn add_compiled_bytes(&mut self, hash: [u8; 32], compiled_bytes: u64) {
        match self.entries.get_mut(&hash) {
            Some(entry) if !entry.compiled_counted => {
                entry.bytes += compiled_bytes;
                entry.compiled_counted = true;
                self.total += compiled_bytes;
                self.evict_over_budget(hash);
            }
            Some(_) => {}
            None => {
                if self.early_sizes.len() >= MOST_EARLY_SIZES {
                    self.early_sizes.clear();
                }
                self.early_sizes.insert(hash, compiled_bytes);
            }
        }
    }

    /// Evicts the least recently used modules other than `hash` until the
    /// cache is within budget.
    fn evict_over_budget(&mut self, hash: [u8; 32]) {
        while self.total > self.budget {
            let Some(oldest) =
                self.entries.iter().filter(|(h, _)| **h != hash).min_by_key(|(_, e)| e.last_used).map(|(h, _)| *h)
            else {
                break;
            };
            let evicted = self.entries.remove(&oldest).expect("found above");
            self.total -= evicted.bytes;
            if let Some(hashes) = self.by_fingerprint.get_mut(&evicted.print) {
                hashes.retain(|h| *h != oldest);
                if hashes.is_empty() {
                    self.by_fingerprint.remove(&evicted.print);
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.total
    }
}

/// Deletes the least recently used artifacts in `dir` (by modification
/// time, which a load refreshes) until the `.wasmer` files in it take at
/// most `budget` bytes; `keep` is never deleted.
pub(crate) fn trim_disk_cache(dir: &Path, budget: u64, keep: &Path) -> std::io::Result<()> {
    let mut files: Vec<(SystemTime, u64, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "wasmer") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len(), path));
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= budget {
            break;
        }
        if path == keep {
            continue;
        }
        // Another process sharing the directory may have removed it first.
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
    Ok(())
}

/// Marks a disk cache entry as just used, so trimming keeps it longest.
pub(crate) fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A counting gate: at most `limit` holders at once.
pub(crate) struct Gate {
    limit: usize,
    state: Mutex<GateState>,
    freed: Condvar,
}

#[derive(Default)]
struct GateState {
    inside: usize,
    peak: usize,
}

/// A place in a [`Gate`], given back on drop.
pub(crate) struct Pass<'g>(&'g Gate);

impl Gate {
    pub(crate) fn new(limit: usize) -> Gate {
        Gate { limit: limit.max(1), state: Mutex::new(GateState::default()), freed: Condvar::new() }
    }

    /// Waits for a place.
    pub(crate) fn enter(&self) -> Pass<'_> {
        let mut state = self.state.lock().expect("gate lock");
        while state.inside >= self.limit {
            state = self.freed.wait(state).expect("gate lock");
        }
        state.inside += 1;
        state.peak = state.peak.max(state.inside);
        Pass(self)
    }

    /// The most holders there have been at once.
    pub(crate) fn peak(&self) -> usize {
        self.state.lock().expect("gate lock").peak
    }

    /// Waits until the gate has no holder.
    pub(crate) fn wait_empty(&self) {
        let mut state = self.state.lock().expect("gate lock");
        while state.inside > 0 {
            state = self.freed.wait(state).expect("gate lock");
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("gate lock").inside -= 1;
        // Those waiting for a place and those waiting for none.
        self.0.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::ModuleCache;
    use crate::SmartEngine;

    #[test]
    fn compiled_sizes_count_whether_they_come_before_or_after_their_module() {
        let wasm = dev_support::wasm("uppercase-map");
        let engine = SmartEngine::new();
        let module = engine.load("m", &wasm).unwrap();
        let (first, second) = ([1; 32], [2; 32]);
        let mut cache = ModuleCache::new(u64::MAX);
        // After: the module is cached first, counted with its wasm alone.
        cache.insert(first, module.clone(), &wasm, None);
        assert_eq!(cache.bytes(), wasm.len() as u64);
        cache.add_compiled_bytes(first, 1000);
        assert_eq!(cache.bytes(), wasm.len() as u64 + 1000);
        // Counted once: a second report changes nothing.
        cache.add_compiled_bytes(first, 1000);
        assert_eq!(cache.bytes(), wasm.len() as u64 + 1000);
        // Before: the size waits for its module.
        cache.add_compiled_bytes(second, 500);
        assert_eq!(cache.bytes(), wasm.len() as u64 + 1000);
        cache.insert(second, module, &wasm, None);
        assert_eq!(cache.bytes(), 2 * wasm.len() as u64 + 1500);
    }

    #[test]
    fn a_compiled_size_that_arrives_late_evicts_what_no_longer_fits() {
        let wasm = dev_support::wasm("uppercase-map");
        let module = SmartEngine::new().load("m", &wasm).unwrap();
        let budget = 2 * wasm.len() as u64 + 100;
        let mut cache = ModuleCache::new(budget);
        cache.insert([1; 32], module.clone(), &wasm, None);
        cache.insert([2; 32], module, &wasm, None);
        assert_eq!(cache.len(), 2);
        cache.add_compiled_bytes([2; 32], 1000);
        assert_eq!(cache.len(), 1, "the older module is evicted");
        assert!(cache.get(&[2; 32]).is_some(), "the module whose size came stays");
    }
}
