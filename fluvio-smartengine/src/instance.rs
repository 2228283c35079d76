//! One running instance of a SmartModule: its store, memory, exports and
//! host imports, and the bounds-checked exchange of batches with it.

use fluvio_protocol::batch::{RecordIndex, encode_record, write_batch_header};
use fluvio_protocol::{ModuleKind, SmartModuleExtraParams};
use fluvio_smartmodule::abi::{self, FormatError, RecordView};
use fluvio_smartmodule::codec::{ByteReader, PutBytes};
use fluvio_smartmodule::log::Level;
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Global, Instance, Memory, RuntimeError, Store, TypedFunction, Value, imports,
};

use super::fuel;
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

/// An error a guest reported for one record of a batch (or, with index
/// [`abi::NO_RECORD`], for its setup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestError {
    /// Index of the record in the batch the guest was given.
    pub index: u32,
    /// The error's kind: the guest error type's name.
    pub kind: String,
    /// The error's message.
    pub message: String,
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
    /// accumulator, and runs its `init` function if it has one.
    pub fn new(
        engine: &SmartEngine,
        module: &SmartModule,
        params: &SmartModuleExtraParams,
        accumulator: Option<&[u8]>,
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
            budget: engine.limits().fuel_per_batch,
            last_fuel_used: 0,
            memory_limit: engine.limits().memory_bytes,
            input_ptr: 0,
            input_cap: 0,
            logs: Vec::new(),
        };
        let blob = encode_setup(params, accumulator);
        this.write_input(&blob).map_err(|e| e.into_engine_error(&this.name))?;
        let (location, _) =
            this.call(|store| setup.call(store, blob.len() as i32)).map_err(|e| e.into_engine_error(&this.name))?;
        this.check_setup(location)?;
        if let Some(init) = init {
            let (location, _) = this.call(|store| init.call(store)).map_err(|e| e.into_engine_error(&this.name))?;
            this.check_setup(location)?;
        }
        Ok(this)
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Log lines the module wrote since the last call to this method.
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        std::mem::take(&mut self.logs)
    }

    /// Runs `f` with a fresh CPU budget and classifies any failure.
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
        view.write(self.input_ptr as u64, bytes).map_err(|_| EngineError::InvalidOutput {
            module: self.name.clone(),
            reason: format!(
                "input buffer {:#x}+{} is outside guest memory ({} bytes)",
                self.input_ptr,
                bytes.len(),
                view.data_size()
            ),
        })?;
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
        self.write_input(batch)?;
        let len = batch.len() as i32;
        self.budget = self.fuel_limit;
        let (location, _) = self.call(|store| look_back.call(store, len, abi::FLAG_STOP_ON_ERROR as i32))?;
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
                    .map_or(header.base_offset, |record| header.base_offset + record.offset_delta as i64),
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
        self.write_input(batch)?;
        let len = batch.len() as i32;
        let process = self.process.clone();
        self.budget = fuel.min(self.fuel_limit);
        let called = self.call(|store| process.call(store, len, flags as i32));
        self.budget = self.fuel_limit;
        let (location, fuel_used) = called?;
        let view = self.memory.view(&self.store);
        // SAFETY: as in `check_setup`, no guest code runs during the borrow.
        let memory = unsafe { std::slice::from_raw_parts(view.data_ptr(), view.data_size() as usize) };
        let output = OutputArea::locate(memory, location as u64).map_err(|r| self.invalid(r))?;
        let (next_ptr, next_cap) = output.next_input(memory.len()).map_err(|r| self.invalid(r))?;
        if output.status == abi::STATUS_BAD_INPUT {
            let errors = output.errors(records.len() as u32).unwrap_or_default();
            let reason = errors.first().map_or("no reason given", |e| e.message.as_str());
            return Err(EngineError::InvalidBatch(FormatError::new(format!(
                "the module could not read the batch: {reason}"
            )))
            .into());
        }
        if output.status != abi::STATUS_OK && output.status != abi::STATUS_STOPPED {
            return Err(self.invalid(FormatError::new(format!("unknown status {}", output.status))).into());
        }
        let errors = output.errors(records.len() as u32).map_err(|r| self.invalid(r))?;
        let decoded = match self.kind {
            ModuleKind::Filter => decode_filter(&output, batch, records),
            kind => decode_records(kind, &output, batch, records, output_limit(batch, self.memory_limit)),
        }
        .map_err(|r| self.invalid(r))?;
        self.input_ptr = next_ptr;
        self.input_cap = next_cap;
        Ok(ProcessOutput {
            batch: decoded.0,
            records_out: output.entry_count,
            errors,
            last_value: decoded.1,
            fuel_used,
        })
    }
}

/// The output area a guest pointed at, checked against its memory.
struct OutputArea<'m> {
    status: u32,
    next_ptr: u32,
    next_cap: u32,
    entry_count: u32,
    error_count: u32,
    entries: &'m [u8],
    errors: &'m [u8],
}

impl<'m> OutputArea<'m> {
    fn locate(memory: &'m [u8], location: u64) -> Result<OutputArea<'m>, FormatError> {
        let (ptr, len) = abi::unpack_location(location);
        let area = ByteReader::at(memory, ptr as usize).bytes(len as usize, "output area").map_err(|_| {
            FormatError::new(format!("output area {ptr:#x}+{len} is outside guest memory ({} bytes)", memory.len()))
        })?;
        let mut header = ByteReader::new(area);
        let status = header.u32("output status")?;
        let next_ptr = header.u32("next input pointer")?;
        let next_cap = header.u32("next input capacity")?;
        let entry_count = header.u32("entry count")?;
        let error_count = header.u32("error count")?;
        let entries_len = header.u32("entries length")? as usize;
        let entries = header.bytes(entries_len, "output entries")?;
        let errors = &area[header.position()..];
        Ok(OutputArea { status, next_ptr, next_cap, entry_count, error_count, entries, errors })
    }

    fn next_input(&self, memory_len: usize) -> Result<(u32, u32), FormatError> {
        let end = self.next_ptr as u64 + self.next_cap as u64;
        if end > memory_len as u64 {
            return Err(FormatError::new(format!(
                "next input buffer {:#x}+{} is outside guest memory ({memory_len} bytes)",
                self.next_ptr, self.next_cap
            )));
        }
        Ok((self.next_ptr, self.next_cap))
    }

    /// The record errors. Indexes must be below `record_count` or be
    /// [`abi::NO_RECORD`].
    fn errors(&self, record_count: u32) -> Result<Vec<GuestError>, FormatError> {
        let mut errors = Vec::with_capacity(self.error_count.min(1024) as usize);
        let mut reader = ByteReader::new(self.errors);
        for _ in 0..self.error_count {
            let index = reader.u32("error record index")?;
            if index >= record_count && index != abi::NO_RECORD {
                return Err(FormatError::new(format!(
                    "error for record index {index}, but the batch has {record_count} records"
                )));
            }
            let kind = reader.len_prefixed("error kind")?;
            let message = reader.len_prefixed("error message")?;
            errors.push(GuestError {
                index,
                kind: String::from_utf8_lossy(kind).into_owned(),
                message: String::from_utf8_lossy(message).into_owned(),
            });
        }
        Ok(errors)
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

fn start_output(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..abi::BATCH_HEADER_LEN]);
    out
}

fn finish_output(out: &mut [u8], records: &RecordIndex, count: u32) {
    let header = records.header();
    write_batch_header(out, header.base_offset, count, header.base_timestamp);
}

/// A filter answers with the indexes it keeps; the kept records are copied
/// from the host's own copy of the input.
fn decode_filter(
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    if output.entries.len() != output.entry_count as usize * 4 {
        return Err(FormatError::new(format!(
            "{} filter entries need {} bytes, got {}",
            output.entry_count,
            output.entry_count as u64 * 4,
            output.entries.len()
        )));
    }
    let mut out = start_output(input);
    let mut previous: Option<u32> = None;
    let mut entries = ByteReader::new(output.entries);
    for _ in 0..output.entry_count {
        let index = entries.u32("filter entry")?;
        if let Some(previous) = previous.filter(|p| index <= *p) {
            return Err(FormatError::new(format!(
                "filter kept record {index} after record {previous}; indexes must increase"
            )));
        }
        let record = records.bytes(input, index as usize).ok_or_else(|| {
            FormatError::new(format!("filter kept record {index}, but the batch has {} records", records.len()))
        })?;
        out.extend_from_slice(record);
        previous = Some(index);
    }
    finish_output(&mut out, records, output.entry_count);
    Ok((out, None))
}

/// A key or value of an entry: its bytes, and their range in the input
/// batch when they are input bytes.
type EntryData<'a> = (&'a [u8], Option<(usize, usize)>);

/// Reads one key or value of a map-like entry: inline bytes in the output
/// area, or a range of the input batch.
fn entry_data<'a>(
    tag: u8,
    entries: &mut ByteReader<'a>,
    input: &'a [u8],
) -> Result<Option<EntryData<'a>>, FormatError> {
    match tag {
        abi::DATA_NONE => Ok(None),
        abi::DATA_INLINE => Ok(Some((entries.len_prefixed("inline bytes")?, None))),
        abi::DATA_INPUT_RANGE => {
            let start = entries.u32("input range start")? as usize;
            let len = entries.u32("input range length")? as usize;
            let bytes = ByteReader::at(input, start).bytes(len, "input range").map_err(|_| {
                FormatError::new(format!("input range {start}+{len} is outside the {}-byte batch", input.len()))
            })?;
            Ok(Some((bytes, Some((start, len)))))
        }
        other => Err(FormatError::new(format!("unknown data tag {other}"))),
    }
}

/// The most bytes a module's output batch may take: its input passed
/// through whole, plus as much new data as its memory could hold. Entries
/// may point at input bytes, so without a limit a few bytes of entries
/// could repeat one large record until the host runs out of memory.
fn output_limit(input: &[u8], memory_limit: u64) -> usize {
    input.len().saturating_add(usize::try_from(memory_limit).unwrap_or(usize::MAX))
}

/// Map-like kinds answer with entries; a record whose key and value are
/// the source's own bytes is copied whole from the host's input. A map,
/// filter-map or aggregate answers at most once per record; an array-map
/// may answer several times for one record, in order.
fn decode_records(
    kind: ModuleKind,
    output: &OutputArea<'_>,
    input: &[u8],
    records: &RecordIndex,
    limit: usize,
) -> Result<(Vec<u8>, Option<Vec<u8>>), FormatError> {
    let repeats_allowed = kind == ModuleKind::ArrayMap;
    let mut entries = ByteReader::new(output.entries);
    let mut out = start_output(input);
    let mut previous: Option<u32> = None;
    let mut last_value = None;
    // Entries for one source record are consecutive (array-map), so the
    // last parsed source is reused.
    let mut source_cache: Option<(u32, RecordView<'_>)> = None;
    for n in 0..output.entry_count {
        let index = entries.u32("entry record index")?;
        let tags = entries.bytes(4, "entry tags")?;
        let (key_tag, value_tag) = (tags[0], tags[1]);
        if let Some(previous) = previous {
            if index < previous {
                return Err(FormatError::new(format!(
                    "entry {n} is for record {index} after record {previous}; records must not go back"
                )));
            }
            if index == previous && !repeats_allowed {
                return Err(FormatError::new(format!(
                    "entry {n} is a second output for record {index}; a {kind} module gives at most one per record"
                )));
            }
        }
        previous = Some(index);
        if (index as usize) >= records.len() {
            return Err(FormatError::new(format!(
                "entry {n} is for record {index}, but the batch has {} records",
                records.len()
            )));
        }
        if source_cache.as_ref().is_none_or(|(cached, _)| *cached != index) {
            source_cache = Some((index, records.view(input, index as usize)?));
        }
        let source = &source_cache.as_ref().expect("cached above").1;
        let key = entry_data(key_tag, &mut entries, input)?;
        let value = entry_data(value_tag, &mut entries, input)?
            .ok_or_else(|| FormatError::new(format!("entry {n} has no value")))?;
        let unchanged = key.map(|k| k.1) == source.key.map(Some) && value.1 == Some(source.value);
        if unchanged {
            out.extend_from_slice(source.bytes);
        } else {
            let headers = &input[source.headers.0..source.headers.0 + source.headers.1];
            encode_record(
                &mut out,
                source.offset_delta,
                source.timestamp_delta,
                key.map(|k| k.0),
                value.0,
                source.header_count,
                headers,
            );
        }
        if out.len() > limit {
            return Err(FormatError::new(format!(
                "the output grew past {limit} bytes at entry {n} (the input plus the module's memory cap)"
            )));
        }
        if n + 1 == output.entry_count {
            last_value = Some(value.0.to_vec());
        }
    }
    entries.finish(&format!("{} entries", output.entry_count))?;
    finish_output(&mut out, records, output.entry_count);
    Ok((out, last_value))
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
        Ok(fluvio_protocol::Batch::seal(bytes))
    })
}
