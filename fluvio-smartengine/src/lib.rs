//! The SmartModule engine: loads SmartModules into wasmer (Cranelift),
//! checks them, caches their compiled code, and runs chains of them over
//! record batches under memory and CPU caps.
//!
//! Producers run chains before sending, the server runs them for consumers,
//! and the CLI runs them in `smart-module test`: all through this crate, and
//! all through one path ([`ChainBuilder`], from the same
//! [`SmartModuleInvocation`]s that requests carry), so a module behaves the
//! same everywhere.
//!
//! It owns wasm: loading, validation, the compiled-module caches, limits,
//! chains, error policies and metrics. It knows nothing of connections,
//! storage or the SDK; it reads and writes batches in the layout of
//! `fluvio-protocol` and speaks the ABI of `fluvio-smartmodule`.
//!
//! ```no_run
//! use fluvio_protocol::{BatchBuilder, ErrorPolicy, SmartModuleInvocation};
//! use fluvio_smartengine::{ChainBuilder, SmartEngine};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = SmartEngine::new();
//! let filter = SmartModuleInvocation::from_file("target/wasm32-unknown-unknown/release/my_filter.wasm")?;
//! let mut chain = ChainBuilder::new(&engine).invocation(filter).on_error(ErrorPolicy::Skip).build()?;
//!
//! let mut batch = BatchBuilder::new(0, 0);
//! batch.push_value(None, b"apple");
//! batch.push_value(None, b"plum");
//! let output = chain.process(&batch.finish())?;
//! assert_eq!(output.batch.record_count(), 1);
//! # Ok(()) }
//! ```

mod cache;
mod chain;
mod counted_loops;
mod error;
mod fluvio_abi;
mod fuel;
mod instance;
mod limits;
pub mod output;
mod stack_args;
mod structure;
mod watchdog;
pub mod window;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmer::sys::{BaseTunables, EngineBuilder, NativeEngineExt};
use wasmer::{ExternType, FunctionType, Module, Type};

pub use chain::{
    ChainBuilder, ChainObserver, ChainOutput, MAX_PANICS_PER_BATCH, ModuleMetrics, Resolver, SmartModuleChain,
};
pub use error::EngineError;
pub use fluvio_protocol::{ErrorPolicy, ModuleKind, RecordFailure, SmartModuleExtraParams, SmartModuleInvocation};
#[cfg(feature = "native-baseline")]
pub use instance::run_native;
pub use instance::{GuestLog, SmartModuleInstance};
pub use limits::{Limits, Metering};
pub use structure::{StructureLimit, StructureLimits};
pub use worker::ChainWorker;

use smartmodule_abi::abi;

/// The ABI versions this host runs.
pub const SUPPORTED_ABI_VERSIONS: &[u32] = &[abi::ABI_VERSION];

/// Bumped whenever compiled code would differ for the same wasm bytes
/// (fuel metering, cost function, wasmer version), so stale disk-cache entries
/// are never loaded.
const ARTIFACT_FORMAT: &str = concat!("fluvio-sm-artifact-6-wasmer7-", env!("CARGO_PKG_VERSION"));

/// Compiles, checks and caches SmartModules, and holds the limits they run
/// under. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct SmartEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    wasmer: wasmer::Engine,
    limits: Limits,
    cache: Mutex<cache::ModuleCache>,
    /// Caps how many modules compile at once.
    compile_gate: cache::Gate,
    /// One lock per module being compiled, so that streams starting at once
    /// with the same module compile it once.
    in_flight: Mutex<HashMap<[u8; 32], Arc<Mutex<()>>>>,
    cache_dir: Option<PathBuf>,
    compilations: AtomicU64,
    /// Told how long each compilation took (see [`SmartEngine::on_compile`]).
    compile_hook: std::sync::OnceLock<CompileHook>,
}

/// What [`SmartEngine::on_compile`] calls.
type CompileHook = Box<dyn Fn(&str, std::time::Duration) + Send + Sync>;

impl Default for SmartEngine {
    fn default() -> Self {
        SmartEngine::new()
    }
}

impl SmartEngine {
    /// An engine with default [`Limits`] and an in-memory cache only.
    pub fn new() -> SmartEngine {
        SmartEngine::with_config(Limits::default(), None)
    }

    /// An engine with the given limits; compiled modules are also kept in
    /// `cache_dir`, when given, so that another process (or a restart) loads
    /// them without compiling.
    pub fn with_config(limits: Limits, cache_dir: Option<PathBuf>) -> SmartEngine {
        let wasmer = compiling_engine(limits);
        SmartEngine {
            inner: Arc::new(EngineInner {
                wasmer,
                limits,
                cache: Mutex::new(cache::ModuleCache::new(limits.cache_bytes)),
                compile_gate: cache::Gate::new(limits.concurrent_compilations),
                in_flight: Mutex::new(HashMap::new()),
                cache_dir,
                compilations: AtomicU64::new(0),
                compile_hook: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The limits modules run under.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Loads a SmartModule from wasm bytes: checks that it is valid
    /// WebAssembly, a SmartModule of a supported ABI version and exactly one
    /// kind, and compiles it. A module with the same bytes is compiled once
    /// per engine (and once per cache directory).
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<SmartModule, EngineError> {
        if let Some(cached) = self.inner.cache.lock().expect("cache lock").get_by_bytes(wasm) {
            return Ok(SmartModule { name: name.to_string(), ..cached.clone() });
        }
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        if let Some(cached) = self.cached(&hash, name) {
            return Ok(cached);
        }
        let flight = Arc::clone(self.inner.in_flight.lock().expect("in-flight lock").entry(hash).or_default());
        let _compiling = flight.lock().expect("compile lock");
        // Another caller may have finished compiling while we waited.
        if let Some(cached) = self.cached(&hash, name) {
            return Ok(cached);
        }
        let result = self.load_uncached(name, hash, wasm);
        self.inner.in_flight.lock().expect("in-flight lock").remove(&hash);
        result
    }

    fn cached(&self, hash: &[u8; 32], name: &str) -> Option<SmartModule> {
        let mut cache = self.inner.cache.lock().expect("cache lock");
        cache.get(hash).map(|cached| SmartModule { name: name.to_string(), ..cached.clone() })
    }

    fn load_uncached(&self, name: &str, hash: [u8; 32], wasm: &[u8]) -> Result<SmartModule, EngineError> {
        if !wasmer::is_wasm(wasm) {
            return Err(EngineError::InvalidWasm {
                reason: "the file does not start with the WebAssembly magic bytes `\\0asm`; build the module with `cargo build --release --target wasm32-unknown-unknown`".into(),
            });
        }
        self.check_structure(name, wasm)?;
        self.check_tables(name, wasm)?;
        let (module, engine, compiled_bytes) = self.compile(name, hash, wasm)?;
        let Inspected { abi, kind, has_init, has_look_back } = inspect(&module)?;
        self.check_memory(name, &module)?;
        let loaded = SmartModule {
            name: name.to_string(),
            abi,
            kind,
            has_init,
            has_look_back,
            hash,
            wasm_size: wasm.len(),
            module,
            engine,
        };
        self.inner.cache.lock().expect("cache lock").insert(hash, loaded.clone(), wasm, compiled_bytes);
        Ok(loaded)
    }

    /// Refuses, before the compiler sees it, a module whose shape would
    /// make compiling it take far longer than its size suggests.
    fn check_structure(&self, name: &str, wasm: &[u8]) -> Result<(), EngineError> {
        structure::check(wasm, &self.inner.limits.structure).map_err(|over| EngineError::TooComplex {
            module: name.to_string(),
            limit: over.limit,
            found: over.found,
            max: over.max,
            function: over.function,
        })
    }

    /// A module whose declared minimum memory is above the cap could never
    /// be instantiated; refuse it now, by comparing numbers, rather than by
    /// reading the runtime's message when instantiation fails.
    fn check_memory(&self, name: &str, module: &Module) -> Result<(), EngineError> {
        let limit_pages = self.inner.limits.memory_pages();
        for export in module.exports() {
            if let ExternType::Memory(memory) = export.ty()
                && memory.minimum > limit_pages
            {
                return Err(EngineError::MemoryLimitExceeded {
                    module: name.to_string(),
                    limit_bytes: self.inner.limits.memory_bytes,
                    requested: Some(memory.minimum.bytes().0 as u64),
                });
            }
        }
        Ok(())
    }

    /// A SmartModule needs one table (for indirect calls) at most. Tables
    /// are host memory outside the linear memory cap, so a table whose
    /// declared minimum is above the table cap is refused now, before the
    /// runtime would allocate it; growth past the cap fails in the module.
    fn check_tables(&self, name: &str, wasm: &[u8]) -> Result<(), EngineError> {
        let mut tables = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            // Malformed modules are reported by the compiler, with its words.
            let Ok(payload) = payload else { return Ok(()) };
            if let wasmparser::Payload::TableSection(reader) = payload {
                for table in reader {
                    let Ok(table) = table else { return Ok(()) };
                    tables.push(table.ty.initial);
                }
            }
        }
        if tables.len() > 1 {
            return Err(EngineError::InvalidWasm {
                reason: format!("the module declares {} tables; a SmartModule may have at most one", tables.len()),
            });
        }
        let limit_elements = self.inner.limits.table_elements();
        if let Some(&initial) = tables.first()
            && initial > limit_elements
        {
            return Err(EngineError::MemoryLimitExceeded {
                module: name.to_string(),
                limit_bytes: self.inner.limits.memory_bytes,
                requested: Some(initial.saturating_mul(limits::TABLE_ELEMENT_BYTES)),
            });
        }
        Ok(())
    }

    /// Loads a SmartModule from a `.wasm` file, named after the file.
    pub fn load_file(&self, path: &Path) -> Result<SmartModule, EngineError> {
        let wasm = std::fs::read(path)
            .map_err(|error| EngineError::ReadFile { path: path.to_path_buf(), reason: error.to_string() })?;
        let name = path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned());
        self.load(&name, &wasm)
    }

    /// Number of distinct compiled modules in the in-memory cache (at most
    /// [`Limits::cache_bytes`] of compiled code; older ones are evicted).
    pub fn cached_modules(&self) -> usize {
        self.inner.cache.lock().expect("cache lock").len()
    }

    /// Bytes of compiled code, and of the wasm kept beside it, in the
    /// in-memory cache. A module just compiled has its code counted once
    /// its compile's thread has measured it, shortly after its load
    /// returned (see [`wait_for_compile_threads`](Self::wait_for_compile_threads)).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.lock().expect("cache lock").bytes()
    }

    /// Waits until no compile's thread is at work. A load returns as soon
    /// as its module is compiled and checked; its thread then serializes
    /// the compiled code, counts its size in the in-memory cache and, with
    /// a disk cache, writes it there (the serializing alone was 2% of the
    /// largest module's load). What that thread does after is done when
    /// this returns.
    pub fn wait_for_compile_threads(&self) {
        self.inner.compile_gate.wait_empty();
    }

    /// The most modules this engine has compiled at the same time (at most
    /// [`Limits::concurrent_compilations`]).
    pub fn peak_concurrent_compilations(&self) -> usize {
        self.inner.compile_gate.peak()
    }

    /// Number of times this engine ran the compiler (cache misses in memory
    /// and on disk).
    pub fn compilations(&self) -> u64 {
        self.inner.compilations.load(Ordering::Relaxed)
    }

    /// Calls `hook` with the module's name and the time the compiler took,
    /// after each compilation (not for modules found in a cache). Set once;
    /// later calls are ignored.
    pub fn on_compile(&self, hook: impl Fn(&str, std::time::Duration) + Send + Sync + 'static) {
        let _ = self.inner.compile_hook.set(Box::new(hook));
    }

    /// Compiles (or loads from the disk cache) and returns the module with
    /// the engine its instances must run on, and the size of its compiled
    /// code when it was read from the disk cache (a compile's thread counts
    /// it in the cache itself, after this returns).
    fn compile(
        &self,
        name: &str,
        hash: [u8; 32],
        wasm: &[u8],
    ) -> Result<(Module, wasmer::Engine, Option<u64>), EngineError> {
        let artifact_path = self.inner.cache_dir.as_ref().map(|dir| {
            let mut key = Sha256::new();
            key.update(ARTIFACT_FORMAT);
            key.update(hash);
            key.update(self.inner.limits.memory_bytes.to_le_bytes());
            // The metering is compiled into the code.
            key.update(self.inner.limits.metering.name());
            dir.join(format!("{}.wasmer", hex(&key.finalize())))
        });
        if let Some(path) = &artifact_path
            && let Ok(bytes) = std::fs::read(path)
        {
            // SAFETY: the file was written by `Module::serialize` in this
            // cache directory, under a name derived from the wasm bytes and
            // ARTIFACT_FORMAT; a foreign or stale file fails to deserialize
            // and is recompiled below.
            let compiled_bytes = bytes.len() as u64;
            match unsafe { Module::deserialize(&self.inner.wasmer, bytes) } {
                Ok(module) => {
                    cache::touch(path);
                    return Ok((module, self.inner.wasmer.clone(), Some(compiled_bytes)));
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unreadable compiled-module cache entry")
                }
            }
        }
        let started = std::time::Instant::now();
        let (module, engine) = self.compile_in_time(name, hash, wasm, artifact_path)?;
        if let Some(hook) = self.inner.compile_hook.get() {
            hook(name, started.elapsed());
        }
        Ok((module, engine, None))
    }

    /// Meters and compiles `wasm` on a thread of its own, once a compile
    /// place is free, and waits at most [`Limits::compile_time`] for it.
    /// The compiler cannot be stopped midway: past the deadline the caller
    /// gets its error at once while the thread finishes, still holding its
    /// compile place, so a module that compiles too long never takes more
    /// than one core from the others. Once the caller has the module, the
    /// thread goes on with its artifact ([`EngineInner::keep_artifact`]),
    /// still in its place.
    fn compile_in_time(
        &self,
        name: &str,
        hash: [u8; 32],
        wasm: &[u8],
        artifact_path: Option<PathBuf>,
    ) -> Result<(Module, wasmer::Engine), EngineError> {
        let (started_tx, started) = std::sync::mpsc::sync_channel::<()>(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        let wasm = wasm.to_vec();
        std::thread::Builder::new()
            .name("smartmodule-compile".into())
            .spawn(move || {
                let _pass = inner.compile_gate.enter();
                inner.compilations.fetch_add(1, Ordering::Relaxed);
                let _ = started_tx.send(());
                let engine = compiling_engine(inner.limits);
                let compiled = fuel::instrument(&wasm, inner.limits.metering)
                    .map_err(|reason| EngineError::InvalidWasm { reason })
                    .and_then(|metered| {
                        Module::new(&engine, metered)
                            .map_err(|error| EngineError::InvalidWasm { reason: error.to_string() })
                    })
                    .map(|module| (module, engine));
                let module = compiled.as_ref().ok().map(|(module, _)| module.clone());
                // A caller that gave up waiting wants no artifact either.
                if done_tx.send(compiled).is_ok()
                    && let Some(module) = module
                {
                    inner.keep_artifact(&module, hash, artifact_path.as_deref());
                }
            })
            .map_err(|error| EngineError::WorkerGone { reason: format!("could not be started to compile: {error}") })?;
        let gone = || EngineError::WorkerGone { reason: "that compiled the module panicked".into() };
        started.recv().map_err(|_| gone())?;
        match done.recv_timeout(self.inner.limits.compile_time) {
            Ok(compiled) => compiled,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(EngineError::CompileTimeLimitExceeded {
                module: name.to_string(),
                limit_ms: self.inner.limits.compile_time.as_millis() as u64,
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }
}

impl EngineInner {
    /// Serializes a module just compiled, counts its size in the in-memory
    /// cache, and writes it to the disk cache, if there is one. Failures
    /// cost only the cache: they are logged.
    fn keep_artifact(&self, module: &Module, hash: [u8; 32], artifact_path: Option<&Path>) {
        let artifact = match module.serialize() {
            Ok(artifact) => artifact,
            Err(error) => {
                tracing::warn!(%error, "could not serialize a compiled module; its code goes uncounted and uncached");
                return;
            }
        };
        self.cache.lock().expect("cache lock").add_compiled_bytes(hash, artifact.len() as u64);
        if let Some(path) = artifact_path {
            if let Err(error) = write_artifact(&artifact, path) {
                tracing::warn!(path = %path.display(), %error, "could not write compiled-module cache entry");
            } else if let Some(dir) = path.parent()
                && let Err(error) = cache::trim_disk_cache(dir, self.limits.cache_bytes, path)
            {
                tracing::warn!(dir = %dir.display(), %error, "could not trim the compiled-module cache");
            }
        }
    }
}

/// The environment variable that makes the engine write a `perf` map of
/// the modules it compiles or loads from its disk cache (any value): for
/// profiling guest code, see `docs/engine.md`.
pub const PERFMAP_VARIABLE: &str = "FLUVIO_SMARTENGINE_PERFMAP";

/// A wasmer engine that compiles SmartModules (metered beforehand by
/// [`fuel::instrument`]) and runs them under the memory cap. Every
/// compilation gets an engine of its own, which the module's instances
/// then use: a wasmer engine keeps the code it compiled until it is
/// dropped, so a module evicted from the cache takes its code with it.
///
/// With [`PERFMAP_VARIABLE`] set, the compiler also writes where each
/// function's code is to `/tmp/perf-PID.map`, so that `perf` names the
/// guest's functions instead of `[unknown]`.
fn compiling_engine(limits: Limits) -> wasmer::Engine {
    let mut compiler = wasmer::sys::Cranelift::default();
    if std::env::var_os(PERFMAP_VARIABLE).is_some() {
        wasmer::sys::CompilerConfig::enable_perfmap(&mut compiler);
    }
    let mut engine: wasmer::Engine =
        EngineBuilder::new(compiler).set_features(Some(smartmodule_features())).engine().into();
    engine.set_tunables(limits::CappedTunables::new(
        BaseTunables::new(),
        limits.memory_pages(),
        limits.table_elements(),
    ));
    engine
}

/// The WebAssembly proposals a SmartModule may use: what Rust's wasm32
/// target emits (bulk memory, reference types, multi-value, SIMD,
/// extended constants), and nothing that gives a module more than one
/// memory, shared memory and threads, 64-bit memories, or exceptions that
/// the fuel settlement would have to follow.
fn smartmodule_features() -> wasmer::sys::Features {
    let mut features = wasmer::sys::Features::new();
    features
        .threads(false)
        .multi_memory(false)
        .memory64(false)
        .exceptions(false)
        .tail_call(false)
        .relaxed_simd(false)
        .wide_arithmetic(false)
        .module_linking(false);
    features
}

fn write_artifact(bytes: &[u8], path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Atomic, so a concurrent reader (another process sharing the cache)
    // never sees half a file.
    fluvio_fs::write_atomic(path, bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the module's exports: ABI version, kind, and the types of the
/// functions the host will call. Runs no guest code.
fn inspect(module: &Module) -> Result<Inspected, EngineError> {
    let exports: HashMap<String, ExternType> =
        module.exports().map(|e| (e.name().to_string(), e.ty().clone())).collect();
    let versions: Vec<u32> =
        exports.keys().filter_map(|name| name.strip_prefix(abi::ABI_EXPORT_PREFIX)?.parse().ok()).collect();
    if versions.is_empty() && exports.contains_key(fluvio_abi::EXPORT_ALLOC) {
        return inspect_fluvio(module, &exports);
    }
    for import in module.imports() {
        let known = import.module() == abi::IMPORT_MODULE
            && [abi::IMPORT_LOG, abi::IMPORT_PANIC, abi::IMPORT_OUT_OF_MEMORY].contains(&import.name());
        if !known {
            return Err(EngineError::UnknownImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    match versions.as_slice() {
        [] => {
            return Err(EngineError::NotASmartModule {
                reason: "it has no `fluvio_abi_v*` export (nor the `alloc` export of a module built with Fluvio's crate); write it with the fluvio-smartmodule crate and its #[smartmodule(...)] attribute".into(),
            });
        }
        [version] if SUPPORTED_ABI_VERSIONS.contains(version) => {}
        [version] => {
            return Err(EngineError::UnsupportedAbiVersion {
                found: *version,
                supported: SUPPORTED_ABI_VERSIONS.to_vec(),
            });
        }
        many => {
            return Err(EngineError::NotASmartModule {
                reason: format!("it claims several ABI versions at once: {many:?}"),
            });
        }
    }
    let kind = one_kind(&exports, |kind| kind.process_export())?;
    let i32_ = Type::I32;
    let i64_ = Type::I64;
    expect_function(&exports, kind.process_export(), &[i32_, i32_], &[i64_])?;
    expect_function(&exports, abi::EXPORT_RESERVE, &[i32_], &[i32_])?;
    expect_function(&exports, abi::EXPORT_SETUP, &[i32_], &[i64_])?;
    let has_init = exports.contains_key(abi::EXPORT_INIT);
    if has_init {
        expect_function(&exports, abi::EXPORT_INIT, &[], &[i64_])?;
    }
    let has_look_back = exports.contains_key(abi::EXPORT_LOOK_BACK);
    if has_look_back {
        expect_function(&exports, abi::EXPORT_LOOK_BACK, &[i32_, i32_], &[i64_])?;
    }
    expect_memory(&exports)?;
    Ok(Inspected { abi: GuestAbi::Native, kind, has_init, has_look_back })
}

/// A module built with Fluvio's own guest crate: its one import, `alloc`,
/// one kind's function and the optional `init` and `look_back`, each with
/// the signature Fluvio's glue gives it.
fn inspect_fluvio(module: &Module, exports: &HashMap<String, ExternType>) -> Result<Inspected, EngineError> {
    for import in module.imports() {
        if import.module() != fluvio_abi::IMPORT_MODULE || import.name() != fluvio_abi::IMPORT_COPY_RECORDS {
            let hint = if import.module().starts_with("wasi") {
                "; it was built for a WASI target, which SmartModules do not get: build it for wasm32-unknown-unknown"
            } else {
                ""
            };
            return Err(EngineError::NotASmartModule {
                reason: format!(
                    "it looks like a module built with Fluvio's crate, but imports {}.{}, which a Fluvio SmartModule does not{hint}",
                    import.module(),
                    import.name()
                ),
            });
        }
    }
    let kind = one_kind(exports, fluvio_abi::process_export)?;
    let i32_ = Type::I32;
    let call = [i32_, i32_, i32_];
    if let Some(ExternType::Function(found)) = exports.get(fluvio_abi::process_export(kind))
        && found.params() == [i32_, i32_]
    {
        return Err(EngineError::NotASmartModule {
            reason: "it was built with a Fluvio SmartModule crate from before protocol versions (its functions take no version); rebuild it with fluvio-smartmodule 0.2 or later, or with this project's crate".into(),
        });
    }
    expect_function(exports, fluvio_abi::process_export(kind), &call, &[i32_])?;
    expect_function(exports, fluvio_abi::EXPORT_ALLOC, &[i32_], &[i32_])?;
    let has_init = exports.contains_key(fluvio_abi::EXPORT_INIT);
    if has_init {
        expect_function(exports, fluvio_abi::EXPORT_INIT, &call, &[i32_])?;
    }
    let has_look_back = exports.contains_key(fluvio_abi::EXPORT_LOOK_BACK);
    if has_look_back {
        expect_function(exports, fluvio_abi::EXPORT_LOOK_BACK, &call, &[i32_])?;
    }
    expect_memory(exports)?;
    Ok(Inspected { abi: GuestAbi::Fluvio, kind, has_init, has_look_back })
}

/// The one kind whose process export `export_of` names that the module has.
fn one_kind(
    exports: &HashMap<String, ExternType>,
    export_of: impl Fn(ModuleKind) -> &'static str,
) -> Result<ModuleKind, EngineError> {
    let kinds: Vec<ModuleKind> = ModuleKind::ALL.into_iter().filter(|k| exports.contains_key(export_of(*k))).collect();
    match kinds.as_slice() {
        [kind] => Ok(*kind),
        [] => Err(EngineError::NotASmartModule {
            reason: "it has no SmartModule function; mark one with #[smartmodule(filter)], map, filter_map, array_map or aggregate".into(),
        }),
        many => {
            let names: Vec<&str> = many.iter().map(|k| k.name()).collect();
            Err(EngineError::NotASmartModule {
                reason: format!(
                    "it defines several SmartModule functions ({}); a module has exactly one",
                    names.join(", ")
                ),
            })
        }
    }
}

fn expect_memory(exports: &HashMap<String, ExternType>) -> Result<(), EngineError> {
    match exports.get(abi::EXPORT_MEMORY) {
        Some(ExternType::Memory(_)) => Ok(()),
        _ => Err(EngineError::NotASmartModule { reason: "it does not export its linear memory as `memory`".into() }),
    }
}

/// The guest ABI a module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestAbi {
    /// This project's (`fluvio_abi_v1`): records shared in the batch layout,
    /// answers that point into the input.
    Native,
    /// Fluvio's own (`copy_records`, protocol version 22): modules built
    /// with Fluvio's `fluvio-smartmodule` crate, run unchanged.
    Fluvio,
}

impl GuestAbi {
    /// How `fluvio sm list` and errors name it.
    pub fn name(self) -> &'static str {
        match self {
            GuestAbi::Native => "native",
            GuestAbi::Fluvio => "fluvio",
        }
    }
}

/// What a module's exports say about it.
struct Inspected {
    abi: GuestAbi,
    kind: ModuleKind,
    has_init: bool,
    has_look_back: bool,
}

fn expect_function(
    exports: &HashMap<String, ExternType>,
    name: &str,
    params: &[Type],
    results: &[Type],
) -> Result<(), EngineError> {
    let expected = FunctionType::new(params.to_vec(), results.to_vec());
    match exports.get(name) {
        Some(ExternType::Function(found)) if *found == expected => Ok(()),
        Some(other) => Err(EngineError::BadExport {
            name: name.to_string(),
            found: format!("{other:?}"),
            expected: expected.to_string(),
        }),
        None => Err(EngineError::NotASmartModule {
            reason: format!("it does not export `{name}`, which every SmartModule has"),
        }),
    }
}

/// A checked and compiled SmartModule. Cheap to clone: clones share the
/// compiled code, so instantiating a clone compiles nothing.
#[derive(Clone)]
pub struct SmartModule {
    name: String,
    abi: GuestAbi,
    kind: ModuleKind,
    has_init: bool,
    has_look_back: bool,
    hash: [u8; 32],
    wasm_size: usize,
    module: Module,
    engine: wasmer::Engine,
}

impl std::fmt::Debug for SmartModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartModule")
            .field("name", &self.name)
            .field("abi", &self.abi)
            .field("kind", &self.kind)
            .field("size", &self.wasm_size)
            .finish()
    }
}

impl SmartModule {
    /// The name errors and metrics use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same module under another name.
    pub fn renamed(mut self, name: impl Into<String>) -> SmartModule {
        self.name = name.into();
        self
    }

    /// The guest ABI it speaks.
    pub fn abi(&self) -> GuestAbi {
        self.abi
    }

    /// What the module does with records.
    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    /// Whether the module has an `init` function.
    pub fn has_init(&self) -> bool {
        self.has_init
    }

    /// Whether the module has a `look_back` function.
    pub fn has_look_back(&self) -> bool {
        self.has_look_back
    }

    /// Size of the wasm file in bytes.
    pub fn wasm_size(&self) -> usize {
        self.wasm_size
    }

    /// SHA-256 of the wasm bytes, in hex.
    pub fn hash_hex(&self) -> String {
        hex(&self.hash)
    }

    /// Fails with [`EngineError::KindMismatch`] unless the module is of `expected` kind.
    pub fn expect_kind(&self, expected: ModuleKind) -> Result<(), EngineError> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(EngineError::KindMismatch { module: self.name.clone(), expected, found: self.kind })
        }
    }

    pub(crate) fn wasmer_module(&self) -> &Module {
        &self.module
    }

    pub(crate) fn wasmer_engine(&self) -> &wasmer::Engine {
        &self.engine
    }
}
