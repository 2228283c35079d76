//! One running instance of a SmartModule: its store, memory, exports and
//! host imports, and the bounds-checked exchange of batches with it.

use fluvio_protocol::batch::RecordIndex;
use fluvio_protocol::{ModuleKind, SmartModuleExtraParams};
use smartmodule_abi::abi::{self, FormatError};
use smartmodule_abi::codec::PutBytes;
use smartmodule_abi::log::Level;
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Global, Instance, Memory, RuntimeError, Store, TypedFunction, Value, imports,
};

use super::fuel;
use super::output::{GuestError, OutputArea, OutputError, decode_output};
#[cfg(feature = "native-baseline")]
use super::output::{decode_filter, decode_filter_bitmap, decode_output_records, decode_records};
use super::watchdog::{Armed, FuelCell};
use super::{EngineError, GuestAbi, Metering, SmartEngine, SmartModule, fluvio_abi};

/// Longest log line or panic message kept from a guest; the rest is cut.
const MAX_GUEST_MESSAGE: usize = 4096;
/// Most log lines kept from one call; a module that logs more loses the rest
/// and the host says how many it dropped.
const MAX_LOGS_PER_CALL: usize = 1024;
/// Most log lines an instance keeps for `take_logs`; older ones are dropped
/// (they were already emitted through `tracing`), so a long stream whose
/// logs nobody takes does not grow without bound.
const MAX_RETAINED_LOGS: usize = 4096;

/// A log line written by a SmartModule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLog {
    /// The module that wrote it.
    pub module: String,
    /// Its level.
    pub level: Level,
    /// The text.
    pub message: String,
}

struct HostState {
    module: String,
    memory: Option<Memory>,
    logs: Vec<GuestLog>,
    dropped_logs: usize,
    panic: Option<(String, i32)>,
    out_of_memory: Option<u64>,
    /// Where a module of Fluvio's ABI put its answer (`copy_records`).
    copied: Option<(u32, u32)>,
}

impl HostState {
    fn read_message(env: &FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> String {
        let Some(memory) = env.data().memory.as_ref() else { return String::new() };
        let view = memory.view(env);
        let len = (len.max(0) as usize).min(MAX_GUEST_MESSAGE);
        let mut buf = vec![0u8; len];
        match view.read(ptr as u32 as u64, &mut buf) {
            Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => format!("<message at an invalid address {ptr:#x}+{len}>"),
        }
    }
}

fn host_log(mut env: FunctionEnvMut<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let message = HostState::read_message(&env, ptr, len);
    let state = env.data_mut();
    if state.logs.len() >= MAX_LOGS_PER_CALL {
        state.dropped_logs += 1;
        return;
    }
    let module = state.module.clone();
    state.logs.push(GuestLog { module, level: Level::from_i32(level), message });
}

fn host_panic(mut env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32, record: i32) {
    let message = HostState::read_message(&env, ptr, len);
    env.data_mut().panic = Some((message, record));
}

fn host_out_of_memory(mut env: FunctionEnvMut<'_, HostState>, requested: i32) {
    env.data_mut().out_of_memory = Some(requested as u32 as u64);
}

/// Fluvio's `copy_records`: only where the answer is is noted; the host
/// reads (and checks) it once the call has returned.
fn host_copy_records(mut env: FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) {
    env.data_mut().copied = Some((ptr as u32, len as u32));
}

/// The functions the host calls, by the module's ABI.
enum Glue {
    Native {
        reserve: TypedFunction<i32, i32>,
        /// Kept after the start: a windowed aggregate sets a new
        /// accumulator through it before each (key, window).
        setup: TypedFunction<i32, i64>,
        process: TypedFunction<(i32, i32), i64>,
        look_back: Option<TypedFunction<(i32, i32), i64>>,
    },
    Fluvio {
        alloc: TypedFunction<i32, i32>,
        process: TypedFunction<(i32, i32, i32), i32>,
        look_back: Option<TypedFunction<(i32, i32, i32), i32>>,
        /// An aggregate's accumulator, which Fluvio's glue takes with each
        /// call and hands back with each answer.
        accumulator: Vec<u8>,
        /// Bytes of answers the guest's glue left allocated (they cannot
        /// be freed: see [`SmartModuleInstance::wants_restart`]).
        left_behind: u64,
    },
}

/// Where the runtime keeps `global`'s value, for the watchdog to write from
/// another thread.
fn fuel_cell(store: &mut Store, global: &Global) -> Option<FuelCell> {
    if global.ty(store).ty != wasmer::Type::I64 {
        return None;
    }
    let wasmer::sys::vm::VMExtern::Global(handle) = wasmer::Extern::Global(global.clone()).to_vm_extern().unwrap_sys()
    else {
        return None;
    };
    let definition = handle.get(wasmer::AsStoreMut::objects_mut(store).as_sys()).vmglobal();
    // SAFETY: the definition lives inline in the instance's VMContext, which
    // the store owns: it stays put for as long as the instance, which owns
    // the store, and the watchdog only writes it during a call. Its value is
    // a union whose i64 member starts at offset 0, 16-byte aligned.
    Some(unsafe { FuelCell::new(definition.cast::<i64>()) })
}

/// Why a call into the guest failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The module panicked; `record` is the index of the record it was on.
    Panic { message: String, record: Option<u32> },
    /// Anything else: limits, traps, invalid output.
    Engine(EngineError),
}

impl From<EngineError> for CallError {
    fn from(error: EngineError) -> Self {
        CallError::Engine(error)
    }
}

impl CallError {
    pub(crate) fn into_engine_error(self, module: &str) -> EngineError {
        match self {
            CallError::Engine(error) => error,
            CallError::Panic { message, .. } => EngineError::Panic { module: module.to_string(), message },
        }
    }
}

/// The decoded answer to one batch.
pub(crate) struct ProcessOutput {
    /// The output records in the batch layout, header written, CRC not.
    pub batch: Vec<u8>,
    pub records_out: u32,
    /// Each record error the guest reported.
    pub errors: Vec<GuestError>,
    /// The value of the last output record (the accumulator, for aggregates).
    pub last_value: Option<Vec<u8>>,
    pub fuel_used: u64,
    /// The input batch's records, indexed after the call: where the
    /// errors' record indexes point.
    pub records: RecordIndex,
}

/// A SmartModule instantiated, set up (params, accumulator) and initialized,
/// ready to process batches. Owns its own store, so a trap in it cannot
/// touch any other instance.
pub struct SmartModuleInstance {
    name: String,
    kind: ModuleKind,
    store: Store,
    env: FunctionEnv<HostState>,
    memory: Memory,
    glue: Glue,
    fuel_used: Global,
    fuel_limit_global: Global,
    /// The same global as `fuel_limit_global`, as the watchdog writes it.
    fuel_cell: FuelCell,
    fuel_exhausted: Global,
    fuel_limit: u64,
    metering: Metering,
    call_time: std::time::Duration,
    /// Fuel granted to the next call: the limit, or what a batch has left
    /// after earlier attempts.
    budget: u64,
    /// Fuel the last call used, whether it returned or failed.
    last_fuel_used: u64,
    memory_limit: u64,
    /// The newest answer layout offered at setup, and the one the module
    /// took.
    offered_layout: u32,
    answer_layout: u32,
    input_ptr: u32,
    input_cap: u32,
    logs: Vec<GuestLog>,
}

impl SmartModuleInstance {
    /// Instantiates `module`, hands it its parameters and initial
    /// accumulator, and runs its `init` function if it has one, all within
    /// one batch's CPU budget ([`Limits::fuel_per_batch`](crate::Limits)).
    pub fn new(
        engine: &SmartEngine,
        module: &SmartModule,
        params: &SmartModuleExtraParams,
        accumulator: Option<&[u8]>,
    ) -> Result<SmartModuleInstance, EngineError> {
        Self::start(engine, module, params, accumulator, engine.limits().fuel_per_batch)
    }

    /// As [`new`](Self::new), with at most `fuel` for the setup, the
    /// input buffer's reservation and `init` together; what they used is
    /// [`last_fuel_used`](Self::last_fuel_used) afterwards.
    pub(crate) fn start(
        engine: &SmartEngine,
        module: &SmartModule,
        params: &SmartModuleExtraParams,
        accumulator: Option<&[u8]>,
        fuel: u64,
    ) -> Result<SmartModuleInstance, EngineError> {
        let name = module.name().to_string();
        let mut store = Store::new(module.wasmer_engine().clone());
        let env = FunctionEnv::new(
            &mut store,
            HostState {
                module: name.clone(),
                memory: None,
                logs: Vec::new(),
                dropped_logs: 0,
                panic: None,
                out_of_memory: None,
                copied: None,
            },
        );
        let imports = match module.abi() {
            GuestAbi::Native => imports! {
                abi::IMPORT_MODULE => {
                    abi::IMPORT_LOG => Function::new_typed_with_env(&mut store, &env, host_log),
                    abi::IMPORT_PANIC => Function::new_typed_with_env(&mut store, &env, host_panic),
                    abi::IMPORT_OUT_OF_MEMORY => Function::new_typed_with_env(&mut store, &env, host_out_of_memory),
                }
            },
            GuestAbi::Fluvio => imports! {
                fluvio_abi::IMPORT_MODULE => {
                    fluvio_abi::IMPORT_COPY_RECORDS => Function::new_typed_with_env(&mut store, &env, host_copy_records),
                }
            },
        };
        // A memory minimum above the cap was refused at load time, so any
        // failure here is the runtime's own.
        let instance = Instance::new(&mut store, module.wasmer_module(), &imports)
            .map_err(|error| EngineError::Instantiation { module: name.clone(), reason: error.to_string() })?;
        let instantiation = |what: &str, error: &dyn std::fmt::Display| EngineError::Instantiation {
            module: name.clone(),
            reason: format!("{what}: {error}"),
        };
        let memory = instance.exports.get_memory(abi::EXPORT_MEMORY).map_err(|e| instantiation("memory", &e))?.clone();
        env.as_mut(&mut store).memory = Some(memory.clone());
        // A macro, not a closure: each export has types of its own.
        macro_rules! export {
            ($name:expr) => {
                typed_export(&instance, &store, &name, $name)
            };
        }
        let (glue, startup) = match module.abi() {
            GuestAbi::Native => {
                let setup: TypedFunction<i32, i64> = export!(abi::EXPORT_SETUP)?;
                let glue = Glue::Native {
                    reserve: export!(abi::EXPORT_RESERVE)?,
                    setup: setup.clone(),
                    process: export!(module.kind().process_export())?,
                    look_back: module.has_look_back().then(|| export!(abi::EXPORT_LOOK_BACK)).transpose()?,
                };
                let init = module.has_init().then(|| export!(abi::EXPORT_INIT)).transpose()?;
                (glue, Startup::Native { setup, init })
            }
            GuestAbi::Fluvio => {
                let glue = Glue::Fluvio {
                    alloc: export!(fluvio_abi::EXPORT_ALLOC)?,
                    process: export!(fluvio_abi::process_export(module.kind()))?,
                    look_back: module.has_look_back().then(|| export!(fluvio_abi::EXPORT_LOOK_BACK)).transpose()?,
                    accumulator: accumulator.unwrap_or_default().to_vec(),
                    left_behind: 0,
                };
                let init = module.has_init().then(|| export!(fluvio_abi::EXPORT_INIT)).transpose()?;
                (glue, Startup::Fluvio { init })
            }
        };
        let fuel_used = instance.exports.get_global(fuel::USED_EXPORT).map_err(|e| instantiation("fuel", &e))?.clone();
        let fuel_limit_global =
            instance.exports.get_global(fuel::LIMIT_EXPORT).map_err(|e| instantiation("fuel", &e))?.clone();
        let fuel_exhausted =
            instance.exports.get_global(fuel::EXHAUSTED_EXPORT).map_err(|e| instantiation("fuel", &e))?.clone();
        let fuel_cell = fuel_cell(&mut store, &fuel_limit_global)
            .ok_or_else(|| instantiation("fuel", &"the fuel global is not an i64 of the native runtime"))?;

        let mut this = SmartModuleInstance {
            name,
            kind: module.kind(),
            store,
            env,
            memory,
            glue,
            fuel_used,
            fuel_limit_global,
            fuel_cell,
            fuel_exhausted,
            fuel_limit: engine.limits().fuel_per_batch,
            metering: engine.limits().metering,
            call_time: engine.limits().call_time,
            budget: fuel.min(engine.limits().fuel_per_batch),
            last_fuel_used: 0,
            memory_limit: engine.limits().memory_bytes,
            offered_layout: engine.limits().answer_layout,
            answer_layout: abi::ANSWER_LAYOUT_1,
            input_ptr: 0,
            input_cap: 0,
            logs: Vec::new(),
        };
        let granted = this.budget;
        let started = match startup {
            Startup::Native { setup, init } => {
                let blob = encode_setup(params, accumulator, this.offered_layout);
                (|| {
                    this.write_input(&blob).map_err(|e| e.into_engine_error(&this.name))?;
                    let (location, _) = this
                        .call(|store| setup.call(store, blob.len() as i32))
                        .map_err(|e| e.into_engine_error(&this.name))?;
                    this.check_setup(location)?;
                    if let Some(init) = init {
                        let (location, _) =
                            this.call(|store| init.call(store)).map_err(|e| e.into_engine_error(&this.name))?;
                        this.check_setup(location)?;
                    }
                    Ok(())
                })()
            }
            Startup::Fluvio { init: Some(init) } => this.fluvio_init(&init, params),
            Startup::Fluvio { init: None } => Ok(()),
        };
        this.last_fuel_used = granted - this.budget;
        this.budget = this.fuel_limit;
        started.map(|()| this)
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The answer layout the module took at setup; `None` for a module of
    /// Fluvio's ABI, which has its own encoding.
    pub(crate) fn answer_layout(&self) -> Option<u32> {
        matches!(self.glue, Glue::Native { .. }).then_some(self.answer_layout)
    }

    /// Log lines the module wrote since the last call to this method.
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        std::mem::take(&mut self.logs)
    }

    /// Runs `f` with what is left of the budget, takes what it used from
    /// the budget, and classifies any failure.
    fn call<R>(&mut self, f: impl FnOnce(&mut Store) -> Result<R, RuntimeError>) -> Result<(R, u64), CallError> {
        let budget = self.budget;
        // Kept below 2^62 so that `used + cost` never overflows in the guest.
        // Under the deadline the guest only looks whether it is zero: the
        // watchdog's mark.
        let limit = match self.metering {
            Metering::Fuel => budget.min(1 << 62) as i64,
            Metering::Deadline => 1,
        };
        self.fuel_used.set(&mut self.store, Value::I64(0)).expect("fuel global is an i64");
        self.fuel_limit_global.set(&mut self.store, Value::I64(limit)).expect("fuel global is an i64");
        self.fuel_exhausted.set(&mut self.store, Value::I32(0)).expect("metering global is an i32");
        {
            let state = self.env.as_mut(&mut self.store);
            state.panic = None;
            state.out_of_memory = None;
        }
        let watch = Armed::new(self.fuel_cell, self.call_time);
        let result = f(&mut self.store);
        let overdue = watch.fired();
        drop(watch);
        self.collect_logs();
        let used = match self.fuel_used.get(&mut self.store) {
            Value::I64(points) => points.max(0) as u64,
            _ => budget,
        };
        self.last_fuel_used = used.min(budget);
        self.budget = budget - self.last_fuel_used;
        match result {
            Ok(value) => Ok((value, self.last_fuel_used)),
            Err(_) if overdue && Armed::cancelled() => Err(EngineError::Cancelled { module: self.name.clone() }.into()),
            Err(_) if overdue => Err(EngineError::TimeLimitExceeded {
                module: self.name.clone(),
                limit_ms: self.call_time.as_millis().try_into().unwrap_or(u64::MAX),
            }
            .into()),
            Err(error) => Err(self.classify(error)),
        }
    }

    fn collect_logs(&mut self) {
        let state = self.env.as_mut(&mut self.store);
        let dropped = std::mem::take(&mut state.dropped_logs);
        let mut logs = std::mem::take(&mut state.logs);
        if dropped > 0 {
            logs.push(GuestLog {
                module: self.name.clone(),
                level: Level::Warn,
                message: format!("{dropped} more log lines dropped"),
            });
        }
        for log in &logs {
            match log.level {
                Level::Error => tracing::error!(target: "smartmodule", module = %log.module, "{}", log.message),
                Level::Warn => tracing::warn!(target: "smartmodule", module = %log.module, "{}", log.message),
                Level::Info => tracing::info!(target: "smartmodule", module = %log.module, "{}", log.message),
                Level::Debug => tracing::debug!(target: "smartmodule", module = %log.module, "{}", log.message),
            }
        }
        self.logs.append(&mut logs);
        if self.logs.len() > MAX_RETAINED_LOGS {
            let excess = self.logs.len() - MAX_RETAINED_LOGS;
            self.logs.drain(..excess);
        }
    }

    fn classify(&mut self, error: RuntimeError) -> CallError {
        let exhausted = matches!(self.fuel_exhausted.get(&mut self.store), Value::I32(flag) if flag != 0);
        let state = self.env.as_mut(&mut self.store);
        let panic = state.panic.take();
        let out_of_memory = state.out_of_memory.take();
        let module = self.name.clone();
        if exhausted {
            return EngineError::CpuLimitExceeded { module, limit: self.fuel_limit }.into();
        }
        if let Some(requested) = out_of_memory {
            return EngineError::MemoryLimitExceeded {
                module,
                limit_bytes: self.memory_limit,
                requested: Some(requested),
            }
            .into();
        }
        if let Some((message, record)) = panic {
            return CallError::Panic { message, record: u32::try_from(record).ok() };
        }
        let memory_size = self.memory.view(&self.store).data_size();
        if memory_size + (wasmer::WASM_PAGE_SIZE as u64) > self.memory_limit {
            return EngineError::MemoryLimitExceeded { module, limit_bytes: self.memory_limit, requested: None }.into();
        }
        EngineError::Trap { module, message: error.message() }.into()
    }

    /// Copies `bytes` into the guest's input buffer, growing it if needed.
    fn write_input(&mut self, bytes: &[u8]) -> Result<(), CallError> {
        let len = i32::try_from(bytes.len())
            .map_err(|_| EngineError::InvalidBatch(abi::FormatError::new("batch larger than 2 GiB")))?;
        if bytes.len() > self.input_cap as usize {
            let Glue::Native { reserve, .. } = &self.glue else {
                unreachable!("only a module of the native ABI has an input buffer")
            };
            let reserve = reserve.clone();
            let (ptr, _) = self.call(|store| reserve.call(store, len))?;
            self.input_ptr = ptr as u32;
            self.input_cap = len as u32;
        }
        let view = self.memory.view(&self.store);
        // SAFETY: as in `check_setup`, no guest code runs during the borrow
        // (and with threads off, no other thread shares the memory). So a
        // plain copy is sound; wasmer's own `write` copies eight bytes at a
        // time with volatile stores, which took a tenth of a filter's time.
        let memory = unsafe { std::slice::from_raw_parts_mut(view.data_ptr(), view.data_size() as usize) };
        let start = self.input_ptr as usize;
        match memory.get_mut(start..).and_then(|free| free.get_mut(..bytes.len())) {
            Some(input) => input.copy_from_slice(bytes),
            None => {
                return Err(EngineError::InvalidOutput {
                    module: self.name.clone(),
                    reason: format!(
                        "input buffer {:#x}+{} is outside guest memory ({} bytes)",
                        self.input_ptr,
                        bytes.len(),
                        memory.len()
                    ),
                }
                .into());
            }
        }
        Ok(())
    }

    fn invalid(&self, error: FormatError) -> EngineError {
        EngineError::InvalidOutput { module: self.name.clone(), reason: error.reason }
    }

    fn check_setup(&mut self, location: i64) -> Result<(), EngineError> {
        let view = self.memory.view(&self.store);
        // SAFETY: no guest code runs while `memory` is borrowed, so the
        // memory can neither grow (moving it) nor change under us.
        let memory = unsafe { std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize) };
        let output = OutputArea::locate(memory, location as u64).map_err(|r| self.invalid(r))?;
        let (next_ptr, next_cap) = output.next_input(memory.len()).map_err(|r| self.invalid(r))?;
        let errors = output.errors(u32::MAX).map_err(|r| self.invalid(r))?;
        if output.status == abi::STATUS_SETUP_FAILED || !errors.is_empty() {
            let message = errors.into_iter().map(|error| error.message).collect::<Vec<_>>().join("; ");
            return Err(EngineError::InitFailed { module: self.name.clone(), message });
        }
        let layout = output.chosen_layout().map_err(|r| self.invalid(r))?;
        if !(abi::ANSWER_LAYOUT_1..=self.offered_layout.max(abi::ANSWER_LAYOUT_1)).contains(&layout) {
            return Err(self.invalid(FormatError::new(format!(
                "the module took answer layout {layout}, but layouts 1 to {} were offered",
                self.offered_layout
            ))));
        }
        self.answer_layout = layout;
        self.input_ptr = next_ptr;
        self.input_cap = next_cap;
        Ok(())
    }

    /// Has an aggregate go on from `accumulator` (what a windowed
    /// aggregate does before each (key, window)'s records), with at most
    /// `fuel`; what it used is [`last_fuel_used`](Self::last_fuel_used).
    /// A module of the native ABI keeps its accumulator, so it is set up
    /// again with it (setup only reads the parameters and the accumulator;
    /// `init` does not run again); Fluvio's glue takes it with each call.
    pub(crate) fn set_accumulator(
        &mut self,
        params: &SmartModuleExtraParams,
        accumulator: &[u8],
        fuel: u64,
    ) -> Result<(), EngineError> {
        let setup = match &mut self.glue {
            Glue::Fluvio { accumulator: held, .. } => {
                held.clear();
                held.extend_from_slice(accumulator);
                self.last_fuel_used = 0;
                return Ok(());
            }
            Glue::Native { setup, .. } => setup.clone(),
        };
        let blob = encode_setup(params, Some(accumulator), self.offered_layout);
        let granted = fuel.min(self.fuel_limit);
        self.budget = granted;
        let result = self.write_input(&blob).and_then(|()| self.call(|store| setup.call(store, blob.len() as i32)));
        self.last_fuel_used = granted - self.budget;
        self.budget = self.fuel_limit;
        let (location, _) = result.map_err(|e| e.into_engine_error(&self.name))?;
        self.check_setup(location)
    }

    /// Fuel the last call used, also when it failed (a panic, say).
    pub(crate) fn last_fuel_used(&self) -> u64 {
        self.last_fuel_used
    }

    /// Feeds a batch of stored records to the module's `look_back`
    /// function, with a full CPU budget. Fails at the first record it
    /// returns an error for.
    pub(crate) fn look_back(&mut self, batch: &[u8], records: &RecordIndex) -> Result<(), CallError> {
        let look_back = match &self.glue {
            Glue::Native { look_back: Some(look_back), .. } => look_back.clone(),
            Glue::Fluvio { look_back: Some(look_back), .. } => {
                let look_back = look_back.clone();
                return self.fluvio_look_back(&look_back, batch, records);
            }
            _ => return Err(EngineError::NoLookBack { module: self.name.clone() }.into()),
        };
        self.budget = self.fuel_limit;
        let called = self.write_input(batch).and_then(|()| {
            let len = batch.len() as i32;
            self.call(|store| look_back.call(store, len, abi::FLAG_STOP_ON_ERROR as i32))
        });
        self.budget = self.fuel_limit;
        let (location, _) = called?;
        let view = self.memory.view(&self.store);
        // SAFETY: as in `check_setup`, no guest code runs during the borrow.
        let memory = unsafe { std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize) };
        let output = OutputArea::locate(memory, location as u64).map_err(|r| self.invalid(r))?;
        let (next_ptr, next_cap) = output.next_input(memory.len()).map_err(|r| self.invalid(r))?;
        let errors = output.errors(records.len() as u32).map_err(|r| self.invalid(r))?;
        self.input_ptr = next_ptr;
        self.input_cap = next_cap;
        if let Some(error) = errors.into_iter().next() {
            let header = records.header();
            let offset = match error.index {
                abi::NO_RECORD => header.base_offset,
                index => records
                    .view(batch, index as usize)
                    .map_or(header.base_offset, |record| header.base_offset.saturating_add(record.offset_delta as i64)),
            };
            return Err(
                EngineError::LookBackFailed { module: self.name.clone(), offset, message: error.message }.into()
            );
        }
        if output.status != abi::STATUS_OK && output.status != abi::STATUS_STOPPED {
            return Err(self.invalid(FormatError::new(format!("unknown status {}", output.status))).into());
        }
        Ok(())
    }

    /// Runs one batch through the module, with at most `fuel` (capped at the
    /// engine's per-batch limit), and decodes its answer into an output
    /// batch.
    ///
    /// The batch is indexed after the module has run, not before: the
    /// first pass over a batch fresh from memory waits on every cache
    /// miss, and a hop from record length to record length cannot run
    /// ahead of them the way the copy into the guest does. After the copy
    /// and the guest's own pass the batch is in cache, and indexing it is
    /// cheap (a fifth of a filter's time went to indexing first).
    pub(crate) fn process(&mut self, batch: &[u8], flags: u32, fuel: u64) -> Result<ProcessOutput, CallError> {
        let granted = fuel.min(self.fuel_limit);
        self.budget = granted;
        let process = match &self.glue {
            Glue::Native { process, .. } => process.clone(),
            Glue::Fluvio { process, .. } => {
                let process = process.clone();
                let processed = self.fluvio_process(&process, batch, flags);
                self.last_fuel_used = granted - self.budget;
                self.budget = self.fuel_limit;
                let fuel_used = self.last_fuel_used;
                return processed.map(|output| ProcessOutput { fuel_used, ..output });
            }
        };
        let called = self.write_input(batch).and_then(|()| {
            let len = batch.len() as i32;
            self.call(|store| process.call(store, len, flags as i32))
        });
        // The reservation of a larger input buffer is charged with the call.
        self.last_fuel_used = granted - self.budget;
        self.budget = self.fuel_limit;
        let (location, _) = called?;
        let fuel_used = self.last_fuel_used;
        let view = self.memory.view(&self.store);
        // SAFETY: as in `check_setup`, no guest code runs during the borrow.
        let memory = unsafe { std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize) };
        let records = RecordIndex::new(batch).map_err(EngineError::InvalidBatch)?;
        let decoded =
            decode_output(self.kind, self.answer_layout, memory, location as u64, batch, &records, self.memory_limit)
                .map_err(|error| match error {
                OutputError::BadInput(reason) => EngineError::InvalidBatch(FormatError::new(format!(
                    "the module could not read the batch: {reason}"
                ))),
                OutputError::Invalid(error) => self.invalid(error),
            })?;
        (self.input_ptr, self.input_cap) = decoded.next_input;
        Ok(ProcessOutput {
            batch: decoded.batch,
            records_out: decoded.records_out,
            errors: decoded.errors,
            last_value: decoded.last_value,
            fuel_used,
            records,
        })
    }
}

/// The calls of Fluvio's ABI ([`fluvio_abi`]).
impl SmartModuleInstance {
    /// Hands `input` to a Fluvio-ABI `function` (in a buffer from the
    /// guest's `alloc`, which the guest takes over) and returns its status
    /// and its answer, if it gave one through `copy_records`.
    ///
    /// The answer's buffer stays allocated in the guest, as under Fluvio's
    /// own host: the guest's `dealloc` needs the buffer's capacity, which
    /// the answer does not say (the default allocator checks it and traps
    /// on a wrong one). [`wants_restart`](Self::wants_restart) says when
    /// the leftovers have taken half the memory cap.
    fn fluvio_call(
        &mut self,
        function: &TypedFunction<(i32, i32, i32), i32>,
        input: &[u8],
    ) -> Result<(i32, Option<Vec<u8>>), CallError> {
        let Glue::Fluvio { alloc, .. } = &self.glue else {
            unreachable!("only a module of Fluvio's ABI is called this way")
        };
        let alloc = alloc.clone();
        let len = i32::try_from(input.len())
            .map_err(|_| EngineError::InvalidBatch(FormatError::new("an input larger than 2 GiB")))?;
        let (ptr, _) = self.call(|store| alloc.call(store, len))?;
        self.copy_into_guest(ptr as u32, input)?;
        self.env.as_mut(&mut self.store).copied = None;
        let (status, _) = self.call(|store| function.call(store, ptr, len, i32::from(fluvio_abi::PROTOCOL_VERSION)))?;
        let Some((at, len)) = self.env.as_mut(&mut self.store).copied.take() else { return Ok((status, None)) };
        let view = self.memory.view(&self.store);
        // SAFETY: as in `check_setup`, no guest code runs during the borrow.
        let memory = unsafe { std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize) };
        let answer = memory.get(at as usize..).and_then(|rest| rest.get(..len as usize)).map(<[u8]>::to_vec);
        let Some(answer) = answer else {
            return Err(self
                .invalid(FormatError::new(format!(
                    "copy_records named {at:#x}+{len}, outside guest memory ({} bytes)",
                    memory.len()
                )))
                .into());
        };
        if let Glue::Fluvio { left_behind, .. } = &mut self.glue {
            // At least the answer, and the allocator's rounding of it.
            *left_behind += u64::from(len).next_power_of_two();
        }
        Ok((status, Some(answer)))
    }

    /// Whether the instance should be replaced before its next batch: a
    /// module of Fluvio's ABI whose answers, which its glue leaves
    /// allocated, take half the memory cap, or whose memory has reached
    /// three quarters of the cap while they grow it. (A module with a large
    /// state of its own is not restarted for its state alone, until the
    /// answers push it near the cap.) A replacement runs `init` again and
    /// resumes an aggregate from its accumulator; state a module keeps in
    /// memory otherwise (what `look_back` taught it) starts afresh, where
    /// under Fluvio's host the stream would run out of memory.
    pub(crate) fn wants_restart(&self) -> bool {
        let Glue::Fluvio { left_behind, .. } = self.glue else { return false };
        let memory = self.memory.view(&self.store).data_size();
        left_behind.saturating_mul(2) >= self.memory_limit
            || (left_behind > 0 && memory.saturating_mul(4) >= self.memory_limit.saturating_mul(3))
    }

    /// Copies `bytes` to `ptr` in guest memory, checked.
    fn copy_into_guest(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), CallError> {
        let view = self.memory.view(&self.store);
        // SAFETY: as in `write_input`.
        let memory = unsafe { std::slice::from_raw_parts_mut(view.data_ptr(), view.data_size() as usize) };
        let size = memory.len();
        match memory.get_mut(ptr as usize..).and_then(|free| free.get_mut(..bytes.len())) {
            Some(target) => {
                target.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(EngineError::InvalidOutput {
                module: self.name.clone(),
                reason: format!("alloc gave {ptr:#x}+{}, outside guest memory ({size} bytes)", bytes.len()),
            }
            .into()),
        }
    }

    /// Runs Fluvio's `init` with the parameters.
    fn fluvio_init(
        &mut self,
        init: &TypedFunction<(i32, i32, i32), i32>,
        params: &SmartModuleExtraParams,
    ) -> Result<(), EngineError> {
        let input = fluvio_abi::encode_init_input(params);
        let (status, answer) = self.fluvio_call(init, &input).map_err(|e| e.into_engine_error(&self.name))?;
        if status >= 0 {
            return Ok(());
        }
        let message = match answer {
            Some(answer) => fluvio_abi::decode_init_error(&answer).map_err(|e| self.invalid(e))?,
            None => fluvio_abi::init_status(status),
        };
        Err(EngineError::InitFailed { module: self.name.clone(), message })
    }

    /// Feeds stored records to Fluvio's `look_back`.
    fn fluvio_look_back(
        &mut self,
        look_back: &TypedFunction<(i32, i32, i32), i32>,
        batch: &[u8],
        records: &RecordIndex,
    ) -> Result<(), CallError> {
        self.budget = self.fuel_limit;
        let all: Vec<usize> = (0..records.len()).collect();
        let input = fluvio_abi::encode_input(batch, records, &all, None).map_err(EngineError::InvalidBatch)?;
        let called = self.fluvio_call(look_back, &input);
        self.budget = self.fuel_limit;
        let (status, answer) = called?;
        if status >= 0 {
            return Ok(());
        }
        let (offset, message) = match answer {
            Some(answer) => {
                let error = fluvio_abi::decode_look_back_error(&answer).map_err(|e| self.invalid(e))?;
                (error.offset, error.hint)
            }
            None => (records.header().base_offset, fluvio_abi::look_back_status(status)),
        };
        Err(EngineError::LookBackFailed { module: self.name.clone(), offset, message }.into())
    }

    /// Runs a batch through a Fluvio-ABI module. Fluvio's glue stops at a
    /// record's error; unless `flags` say to stop there too, the rest of
    /// the batch is handed in again after the failed record. An array-map
    /// is given one record at a time, since its answers do not say which
    /// record they came from.
    fn fluvio_process(
        &mut self,
        process: &TypedFunction<(i32, i32, i32), i32>,
        batch: &[u8],
        flags: u32,
    ) -> Result<ProcessOutput, CallError> {
        let index = RecordIndex::new(batch).map_err(EngineError::InvalidBatch)?;
        let records = &index;
        let kind = self.kind;
        let limit = batch.len().saturating_add(usize::try_from(self.memory_limit).unwrap_or(usize::MAX));
        let base_offset = records.header().base_offset;
        let all: Vec<usize> = (0..records.len()).collect();
        let mut pending: &[usize] = &all;
        let mut out = fluvio_abi::start_batch(batch);
        let (mut count, mut errors, mut last_value) = (0u32, Vec::new(), None);
        while !pending.is_empty() {
            let selected = if kind == ModuleKind::ArrayMap { &pending[..1] } else { pending };
            let accumulator = match &self.glue {
                Glue::Fluvio { accumulator, .. } if kind == ModuleKind::Aggregate => Some(accumulator.clone()),
                _ => None,
            };
            let input = fluvio_abi::encode_input(batch, records, selected, accumulator.as_deref())
                .map_err(EngineError::InvalidBatch)?;
            let (status, answer) = self.fluvio_call(process, &input)?;
            if status < 0 {
                return Err(self.invalid(FormatError::new(fluvio_abi::transform_status(status))).into());
            }
            let Some(answer) = answer else {
                return Err(self.invalid(FormatError::new("it answered without calling copy_records")).into());
            };
            let output = fluvio_abi::decode_output(&answer, kind).map_err(|e| self.invalid(e))?;
            let mut next = 0;
            let written = fluvio_abi::append_outputs(
                &mut out,
                batch,
                &output.successes,
                |record| match kind {
                    ModuleKind::ArrayMap => records.view(batch, selected[0]),
                    _ => fluvio_abi::source_by_offset(batch, records, selected, &mut next, record),
                },
                limit,
            )
            .map_err(|e| self.invalid(e))?;
            count += output.successes.len() as u32;
            if written.is_some() {
                last_value = written;
            }
            if let (Some(answered), Glue::Fluvio { accumulator, .. }) = (output.accumulator, &mut self.glue) {
                *accumulator = answered.to_vec();
            }
            let Some(error) = output.error else {
                pending = &pending[selected.len()..];
                continue;
            };
            let failed = selected.iter().position(|&index| {
                records
                    .view(batch, index)
                    .is_ok_and(|record| base_offset.saturating_add(i64::from(record.offset_delta)) == error.offset)
            });
            let Some(failed) = failed else {
                return Err(self
                    .invalid(FormatError::new(format!(
                        "it reported an error for offset {}, which is not in the records it was given",
                        error.offset
                    )))
                    .into());
            };
            errors.push(GuestError { index: selected[failed] as u32, kind: "error".into(), message: error.hint });
            if flags & abi::FLAG_STOP_ON_ERROR != 0 {
                break;
            }
            pending = &pending[failed + 1..];
        }
        fluvio_abi::finish_batch(&mut out, records, count);
        Ok(ProcessOutput { batch: out, records_out: count, errors, last_value, fuel_used: 0, records: index })
    }
}

/// Encodes the setup blob a module's `fluvio_setup` reads: `u32 param
/// count`, each param as two length-prefixed strings, then `i32 accumulator
/// length` (-1 for none) and the accumulator bytes.
fn encode_setup(params: &SmartModuleExtraParams, accumulator: Option<&[u8]>, offered_layout: u32) -> Vec<u8> {
    let mut blob = Vec::new();
    blob.put_u32(params.len() as u32);
    for (name, value) in params.iter() {
        abi::encode_header(&mut blob, name.as_bytes(), value.as_bytes());
    }
    match accumulator {
        Some(acc) => {
            blob.put_i32(acc.len() as i32);
            blob.extend_from_slice(acc);
        }
        None => blob.put_i32(-1),
    }
    match params.lookback() {
        Some(lookback) => {
            blob.put_u8(1);
            blob.put_u64(lookback.last);
            blob.put_i64(lookback.age.map_or(-1, |age| age.as_millis().min(i64::MAX as u128) as i64));
        }
        None => blob.put_u8(0),
    }
    // Layout 1 is what every guest speaks: a host that offers no more
    // writes nothing, as hosts did before layout 2.
    if offered_layout != abi::ANSWER_LAYOUT_1 {
        blob.put_u32(offered_layout);
    }
    blob
}

/// Runs a SmartModule function compiled for the host through the same guest
/// glue and the same output decoding the engine uses, without a sandbox.
/// Benchmarks use it as the native baseline; `process` is the glue driver
/// with the user's function, for example
/// `|len| run_filter(len, 0, my_module::filter)`.
#[cfg(feature = "native-baseline")]
pub fn run_native(
    kind: ModuleKind,
    batch: &fluvio_protocol::Batch,
    process: impl FnOnce(i32) -> i64,
) -> Result<fluvio_protocol::Batch, FormatError> {
    let input = batch.as_bytes();
    let records = RecordIndex::new(input)?;
    // Not `Limits::default()`: it asks the system for its core count.
    let layout = abi::NEWEST_ANSWER_LAYOUT;
    fluvio_smartmodule::__private::native::use_layout(layout);
    fluvio_smartmodule::__private::native::call(input, process, |area| {
        let output = OutputArea::locate(area, abi::pack_location(0, area.len() as u32))?;
        let (bytes, _) = match (kind, layout) {
            (ModuleKind::Filter, abi::ANSWER_LAYOUT_1) => decode_filter(&output, input, &records)?,
            (ModuleKind::Filter, _) => decode_filter_bitmap(&output, input, &records)?,
            (kind, abi::ANSWER_LAYOUT_1) => decode_records(kind, &output, input, &records, usize::MAX)?,
            (kind, _) => decode_output_records(kind, &output, input, &records, usize::MAX)?,
        };
        Ok(fluvio_protocol::Batch::seal_host_written(bytes))
    })
}

/// How a started instance is set up, by its ABI: the native ABI's setup
/// call (parameters and accumulator) and optional `init`, or Fluvio's
/// optional `init`.
enum Startup {
    Native { setup: TypedFunction<i32, i64>, init: Option<TypedFunction<(), i64>> },
    Fluvio { init: Option<TypedFunction<(i32, i32, i32), i32>> },
}

/// An exported function of the instance with the types the host calls it
/// with; a missing export or other types fail instantiation, naming it.
fn typed_export<Args: wasmer::WasmTypeList, Rets: wasmer::WasmTypeList>(
    instance: &Instance,
    store: &Store,
    module: &str,
    name: &str,
) -> Result<TypedFunction<Args, Rets>, EngineError> {
    let instantiation = |error: &dyn std::fmt::Display| EngineError::Instantiation {
        module: module.to_string(),
        reason: format!("{name}: {error}"),
    };
    instance.exports.get_function(name).map_err(|e| instantiation(&e))?.typed(store).map_err(|e| instantiation(&e))
}
