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
use super::output::{decode_filter, decode_records};
use super::watchdog::{Armed, FuelCell};
use super::{EngineError, SmartEngine, SmartModule};

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
    reserve: TypedFunction<i32, i32>,
    process: TypedFunction<(i32, i32), i64>,
    look_back: Option<TypedFunction<(i32, i32), i64>>,
    fuel_used: Global,
    fuel_limit_global: Global,
    /// The same global as `fuel_limit_global`, as the watchdog writes it.
    fuel_cell: FuelCell,
    fuel_exhausted: Global,
    fuel_limit: u64,
    call_time: std::time::Duration,
    /// Fuel granted to the next call: the limit, or what a batch has left
    /// after earlier attempts.
    budget: u64,
    /// Fuel the last call used, whether it returned or failed.
    last_fuel_used: u64,
    memory_limit: u64,
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
            },
        );
        let imports = imports! {
            abi::IMPORT_MODULE => {
                abi::IMPORT_LOG => Function::new_typed_with_env(&mut store, &env, host_log),
                abi::IMPORT_PANIC => Function::new_typed_with_env(&mut store, &env, host_panic),
                abi::IMPORT_OUT_OF_MEMORY => Function::new_typed_with_env(&mut store, &env, host_out_of_memory),
            }
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
        let reserve = instance
            .exports
            .get_typed_function(&store, abi::EXPORT_RESERVE)
            .map_err(|e| instantiation(abi::EXPORT_RESERVE, &e))?;
        let process = instance
            .exports
            .get_typed_function(&store, module.kind().process_export())
            .map_err(|e| instantiation(module.kind().process_export(), &e))?;
        let setup: TypedFunction<i32, i64> = instance
            .exports
            .get_typed_function(&store, abi::EXPORT_SETUP)
            .map_err(|e| instantiation(abi::EXPORT_SETUP, &e))?;
        let init: Option<TypedFunction<(), i64>> = if module.has_init() {
            Some(
                instance
                    .exports
                    .get_typed_function(&store, abi::EXPORT_INIT)
                    .map_err(|e| instantiation(abi::EXPORT_INIT, &e))?,
            )
        } else {
            None
        };
        let look_back: Option<TypedFunction<(i32, i32), i64>> = if module.has_look_back() {
            Some(
                instance
                    .exports
                    .get_typed_function(&store, abi::EXPORT_LOOK_BACK)
                    .map_err(|e| instantiation(abi::EXPORT_LOOK_BACK, &e))?,
            )
        } else {
            None
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
            reserve,
            process,
            look_back,
            fuel_used,
            fuel_limit_global,
            fuel_cell,
            fuel_exhausted,
            fuel_limit: engine.limits().fuel_per_batch,
            call_time: engine.limits().call_time,
            budget: fuel.min(engine.limits().fuel_per_batch),
            last_fuel_used: 0,
            memory_limit: engine.limits().memory_bytes,
            input_ptr: 0,
            input_cap: 0,
            logs: Vec::new(),
        };
        let granted = this.budget;
        let blob = encode_setup(params, accumulator);
        let started = (|| {
            this.write_input(&blob).map_err(|e| e.into_engine_error(&this.name))?;
            let (location, _) =
                this.call(|store| setup.call(store, blob.len() as i32)).map_err(|e| e.into_engine_error(&this.name))?;
            this.check_setup(location)?;
            if let Some(init) = init {
                let (location, _) = this.call(|store| init.call(store)).map_err(|e| e.into_engine_error(&this.name))?;
                this.check_setup(location)?;
            }
            Ok(())
        })();
        this.last_fuel_used = granted - this.budget;
        this.budget = this.fuel_limit;
        started.map(|()| this)
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
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
        let limit = budget.min(1 << 62) as i64;
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
            let reserve = self.reserve.clone();
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
        self.input_ptr = next_ptr;
        self.input_cap = next_cap;
        Ok(())
    }

    /// Fuel the last call used, also when it failed (a panic, say).
    pub(crate) fn last_fuel_used(&self) -> u64 {
        self.last_fuel_used
    }

    /// Feeds a batch of stored records to the module's `look_back`
    /// function, with a full CPU budget. Fails at the first record it
    /// returns an error for.
    pub(crate) fn look_back(&mut self, batch: &[u8], records: &RecordIndex) -> Result<(), CallError> {
        let Some(look_back) = self.look_back.clone() else {
            return Err(EngineError::NoLookBack { module: self.name.clone() }.into());
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
    /// batch. `records` indexes the batch's records.
    pub(crate) fn process(
        &mut self,
        batch: &[u8],
        records: &RecordIndex,
        flags: u32,
        fuel: u64,
    ) -> Result<ProcessOutput, CallError> {
        let granted = fuel.min(self.fuel_limit);
        self.budget = granted;
        let process = self.process.clone();
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
        let decoded =
            decode_output(self.kind, memory, location as u64, batch, records, self.memory_limit).map_err(|error| {
                match error {
                    OutputError::BadInput(reason) => EngineError::InvalidBatch(FormatError::new(format!(
                        "the module could not read the batch: {reason}"
                    ))),
                    OutputError::Invalid(error) => self.invalid(error),
                }
            })?;
        (self.input_ptr, self.input_cap) = decoded.next_input;
        Ok(ProcessOutput {
            batch: decoded.batch,
            records_out: decoded.records_out,
            errors: decoded.errors,
            last_value: decoded.last_value,
            fuel_used,
        })
    }
}

/// Encodes the setup blob a module's `fluvio_setup` reads: `u32 param
/// count`, each param as two length-prefixed strings, then `i32 accumulator
/// length` (-1 for none) and the accumulator bytes.
fn encode_setup(params: &SmartModuleExtraParams, accumulator: Option<&[u8]>) -> Vec<u8> {
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
    fluvio_smartmodule::__private::native::call(input, process, |area| {
        let output = OutputArea::locate(area, abi::pack_location(0, area.len() as u32))?;
        let (bytes, _) = match kind {
            ModuleKind::Filter => decode_filter(&output, input, &records)?,
            kind => decode_records(kind, &output, input, &records, usize::MAX)?,
        };
        Ok(fluvio_protocol::Batch::seal_host_written(bytes))
    })
}
