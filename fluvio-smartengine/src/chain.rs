//! Chains of SmartModules run batch by batch, with an error policy and
//! metrics for each module.
//!
//! A chain is built from [`SmartModuleInvocation`]s, the same values that
//! producers, the CLI and stream requests carry, so there is one way from
//! "these modules with these parameters" to running code:
//! [`ChainBuilder::build`] on the caller's thread, or
//! [`ChainBuilder::spawn`] onto a [`ChainWorker`] for async code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvio_protocol::batch::{RecordIndex, write_batch_header};
use fluvio_protocol::{
    Batch, ErrorPolicy, Lookback, MAX_CHAIN_WASM_BYTES, ModuleKind, RecordFailure, SmartModuleExtraParams,
    SmartModuleInvocation, SmartModuleInvocationWasm,
};
use smartmodule_abi::abi::{self, RecordView};

use crate::instance::{CallError, ProcessOutput};
use crate::window::{Folded, WindowState};
use crate::{ChainWorker, EngineError, GuestLog, SmartEngine, SmartModule, SmartModuleInstance};

/// Finds a registered (predefined) module by name: the server's registry,
/// or modules an SDK fetched from it.
pub type Resolver = Box<dyn Fn(&str) -> Result<SmartModule, EngineError> + Send>;

/// Counters for one module of a chain. Each module counts its own records
/// and time; nothing is shared out from chain totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleMetrics {
    /// Batches processed.
    pub batches: u64,
    /// Records handed to the module.
    pub records_in: u64,
    /// Records the module produced.
    pub records_out: u64,
    /// Records the module failed on (errors and panics).
    pub errors: u64,
    /// Wall time spent inside the module, including output decoding.
    pub time: Duration,
    /// Fuel units (roughly, WebAssembly instructions) used.
    pub fuel_used: u64,
    /// Times the module was instantiated (1, plus one per recovery).
    pub instantiations: u64,
    /// Records a windowed aggregate dropped because their windows had
    /// closed.
    pub late: u64,
}

impl ModuleMetrics {
    /// What was counted since `earlier` (an older reading of the same
    /// module).
    pub fn since(&self, earlier: &ModuleMetrics) -> ModuleMetrics {
        ModuleMetrics {
            batches: self.batches.saturating_sub(earlier.batches),
            records_in: self.records_in.saturating_sub(earlier.records_in),
            records_out: self.records_out.saturating_sub(earlier.records_out),
            errors: self.errors.saturating_sub(earlier.errors),
            time: self.time.saturating_sub(earlier.time),
            fuel_used: self.fuel_used.saturating_sub(earlier.fuel_used),
            instantiations: self.instantiations.saturating_sub(earlier.instantiations),
            late: self.late.saturating_sub(earlier.late),
        }
    }
}

/// Told what each module of a chain did in each batch, as it happens: how
/// a server keeps totals per module over all the chains that use it.
pub trait ChainObserver: Send + Sync {
    /// `module` counted `delta` in the batch just processed (or failed).
    fn observe(&self, module: &str, delta: &ModuleMetrics);
}

/// Builds a [`SmartModuleChain`] from invocations.
pub struct ChainBuilder {
    engine: SmartEngine,
    invocations: Vec<SmartModuleInvocation>,
    policy: ErrorPolicy,
    resolver: Resolver,
    observer: Option<Arc<dyn ChainObserver>>,
    window_states: Vec<(usize, Vec<u8>)>,
}

impl std::fmt::Debug for ChainBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let modules: Vec<String> = self.invocations.iter().map(|i| i.name().into_owned()).collect();
        f.debug_struct("ChainBuilder").field("modules", &modules).field("policy", &self.policy).finish()
    }
}

impl ChainBuilder {
    /// An empty chain on `engine`. Predefined modules are refused with
    /// [`EngineError::UnknownModule`] until a [`resolver`](Self::resolver)
    /// is given.
    pub fn new(engine: &SmartEngine) -> ChainBuilder {
        ChainBuilder {
            engine: engine.clone(),
            invocations: Vec::new(),
            policy: ErrorPolicy::Fail,
            resolver: Box::new(|name| Err(EngineError::UnknownModule { name: name.to_string() })),
            observer: None,
            window_states: Vec::new(),
        }
    }

    /// Starts windowed aggregates from saved state
    /// ([`SmartModuleChain::window_states`]), by place in the chain,
    /// instead of with no window open.
    pub fn window_states(mut self, states: Vec<(usize, Vec<u8>)>) -> ChainBuilder {
        self.window_states = states;
        self
    }

    /// Reports each module's counts after every batch to `observer`.
    pub fn observer(mut self, observer: Arc<dyn ChainObserver>) -> ChainBuilder {
        self.observer = Some(observer);
        self
    }

    /// Appends a module; records flow through modules in the order added.
    pub fn invocation(mut self, invocation: SmartModuleInvocation) -> ChainBuilder {
        self.invocations.push(invocation);
        self
    }

    /// Appends several modules, in order.
    pub fn invocations(mut self, invocations: impl IntoIterator<Item = SmartModuleInvocation>) -> ChainBuilder {
        self.invocations.extend(invocations);
        self
    }

    /// Sets the error policy (default: [`ErrorPolicy::Fail`]).
    pub fn on_error(mut self, policy: ErrorPolicy) -> ChainBuilder {
        self.policy = policy;
        self
    }

    /// Sets how predefined modules are found by name.
    pub fn resolver(
        mut self,
        resolver: impl Fn(&str) -> Result<SmartModule, EngineError> + Send + 'static,
    ) -> ChainBuilder {
        self.resolver = Box::new(resolver);
        self
    }

    /// Loads every module (compiling ad hoc ones, unless cached), checks
    /// its kind, instantiates it and runs its setup and `init`, so that a
    /// bad module or parameter is reported now rather than at the first
    /// record. Blocks while compiling: async code uses [`spawn`](Self::spawn).
    pub fn build(self) -> Result<SmartModuleChain, EngineError> {
        let mut stages = Vec::with_capacity(self.invocations.len());
        // What the chain's ad hoc modules may still inflate to.
        let mut inflate_allowance = MAX_CHAIN_WASM_BYTES;
        for invocation in self.invocations {
            let module = match &invocation.wasm {
                SmartModuleInvocationWasm::Predefined(name) => (self.resolver)(name)?,
                adhoc => {
                    let wasm = adhoc.adhoc_wasm_within(inflate_allowance).expect("not predefined").map_err(|error| {
                        EngineError::InvalidWasm {
                            reason: format!(
                                "cannot decompress the module `{}`: {error} (the ad hoc modules of one chain may take {MAX_CHAIN_WASM_BYTES} bytes in all)",
                                invocation.name()
                            ),
                        }
                    })?;
                    inflate_allowance -= wasm.len() as u64;
                    self.engine.load(&invocation.name_given_wasm(&wasm), &wasm)?
                }
            };
            if let Some(kind) = invocation.kind.expected() {
                module.expect_kind(kind)?;
            }
            let lookback = invocation.params.lookback().copied();
            if lookback.is_some() && !module.has_look_back() {
                return Err(EngineError::NoLookBack { module: module.name().to_string() });
            }
            let window = match invocation.params.window() {
                None => None,
                Some(_) if module.kind() != ModuleKind::Aggregate => {
                    return Err(EngineError::WindowNeedsAggregate {
                        module: module.name().to_string(),
                        kind: module.kind(),
                    });
                }
                Some(window) => {
                    let initial = invocation.kind.initial_accumulator().unwrap_or_default().to_vec();
                    let mut state = WindowState::new(module.name(), window.clone(), initial);
                    if let Some((_, saved)) = self.window_states.iter().find(|(place, _)| *place == stages.len()) {
                        state.restore(saved)?;
                    }
                    Some(state)
                }
            };
            let mut stage = Stage {
                window,
                lookback,
                accumulator: invocation.kind.initial_accumulator().map(<[u8]>::to_vec),
                params: invocation.params,
                module,
                instance: None,
                metrics: ModuleMetrics::default(),
                reported: ModuleMetrics::default(),
            };
            // Setup and `init` at build time have a budget of their own.
            stage.ensure_instance(&self.engine, &mut self.engine.limits().fuel_per_batch)?;
            stages.push(stage);
        }
        let mut chain = SmartModuleChain { engine: self.engine, stages, policy: self.policy, observer: self.observer };
        // The instantiations and `init` fuel of the build count too.
        chain.report();
        Ok(chain)
    }

    /// Builds the chain on a thread of its own (see [`ChainWorker`]) and
    /// waits for it, so that a build error is returned here and no
    /// compilation blocks the async runtime.
    pub async fn spawn(self) -> Result<ChainWorker, EngineError> {
        ChainWorker::start(self).await
    }
}

/// The result of running one batch through a chain.
#[derive(Debug)]
pub struct ChainOutput {
    /// The records that came out of the last module, with the offsets and
    /// timestamps of the records they came from.
    pub batch: Batch,
    /// Under [`ErrorPolicy::Fail`], the record the chain stopped at; the
    /// output holds everything before it.
    pub failure: Option<RecordFailure>,
    /// Records dropped under [`ErrorPolicy::Skip`] in this batch.
    pub skipped: u64,
    /// Under [`ErrorPolicy::DeadLetter`], the records modules failed on in
    /// this batch, in stream order, each with its error.
    pub dead_letters: Vec<RecordFailure>,
    /// Each aggregate's accumulator after this batch, by its place in the
    /// chain: a chain built again with these as initial accumulators goes
    /// on exactly where this one is (what derived topics checkpoint).
    pub accumulators: Vec<(usize, Vec<u8>)>,
}

/// SmartModules applied one after the other to each batch. An aggregate's
/// accumulator lives on from batch to batch.
pub struct SmartModuleChain {
    engine: SmartEngine,
    stages: Vec<Stage>,
    policy: ErrorPolicy,
    observer: Option<Arc<dyn ChainObserver>>,
}

impl std::fmt::Debug for SmartModuleChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let modules: Vec<_> = self.stages.iter().map(|s| s.module.name().to_string()).collect();
        f.debug_struct("SmartModuleChain").field("modules", &modules).field("policy", &self.policy).finish()
    }
}

impl SmartModuleChain {
    /// Runs `batch` through every module.
    ///
    /// A record error is handled by the chain's policy. A module that
    /// exceeds its limits, traps or breaks the ABI fails the whole batch
    /// with an [`EngineError`]; it is re-instantiated for the next batch.
    pub fn process(&mut self, batch: &Batch) -> Result<ChainOutput, EngineError> {
        let result = self.process_unreported(batch, false);
        self.report();
        result
    }

    /// Ends the input: every windowed aggregate emits its open windows, as
    /// if the watermark had passed them all (what `sm test` does when its
    /// records run out), and the later modules process them. The records
    /// are at `offset`. Without windows, the output is empty.
    pub fn finish(&mut self, offset: i64) -> Result<ChainOutput, EngineError> {
        let empty = fluvio_protocol::BatchBuilder::new(offset, 0).finish();
        let result = self.process_unreported(&empty, true);
        self.report();
        result
    }

    /// Whether some module runs in a window.
    pub fn has_windows(&self) -> bool {
        self.stages.iter().any(|stage| stage.window.is_some())
    }

    /// Open (key, window) pairs over the chain's windowed aggregates.
    pub fn open_windows(&self) -> usize {
        self.stages.iter().filter_map(|stage| stage.window.as_ref()).map(WindowState::open_windows).sum()
    }

    /// The state of each windowed aggregate, by place in the chain: a chain
    /// built again with these ([`ChainBuilder::window_states`]) goes on
    /// exactly where this one is.
    pub fn window_states(&self) -> Vec<(usize, Vec<u8>)> {
        self.stages
            .iter()
            .enumerate()
            .filter_map(|(place, stage)| stage.window.as_ref().map(|window| (place, window.snapshot())))
            .collect()
    }

    /// Tells the observer, if any, what each module counted since the
    /// last report.
    fn report(&mut self) {
        let Some(observer) = &self.observer else { return };
        for stage in &mut self.stages {
            if stage.metrics != stage.reported {
                observer.observe(stage.module.name(), &stage.metrics.since(&stage.reported));
                stage.reported = stage.metrics.clone();
            }
        }
    }

    fn process_unreported(&mut self, batch: &Batch, finish: bool) -> Result<ChainOutput, EngineError> {
        let mut current: Option<Vec<u8>> = None;
        let mut failure: Option<RecordFailure> = None;
        let mut skipped = 0;
        let mut dead_letters = Vec::new();
        // One CPU budget for the batch, shared by every module of the chain
        // and every retry: a chain of many modules gets no more than one.
        let mut fuel_left = self.engine.limits().fuel_per_batch;
        for stage in &mut self.stages {
            let input = current.as_deref().unwrap_or(batch.as_bytes());
            let output = match stage.window.is_some() {
                true => stage.run_windowed(&self.engine, input, self.policy, finish, &mut fuel_left)?,
                false => stage.run(&self.engine, input, self.policy, &mut fuel_left)?,
            };
            for stage_failure in output.failures {
                match &self.policy {
                    ErrorPolicy::Fail => {
                        // Later modules see only records before this one, so
                        // no later failure can come earlier in the stream.
                        if failure.is_none() {
                            failure = Some(stage_failure);
                        }
                    }
                    ErrorPolicy::Skip => skipped += 1,
                    ErrorPolicy::DeadLetter => dead_letters.push(stage_failure),
                }
            }
            current = Some(output.batch);
        }
        let bytes = current.unwrap_or_else(|| batch.as_bytes().to_vec());
        let accumulators = self
            .stages
            .iter()
            .enumerate()
            .filter(|(_, stage)| stage.window.is_none())
            .filter_map(|(place, stage)| stage.accumulator.clone().map(|accumulator| (place, accumulator)))
            .collect();
        Ok(ChainOutput { batch: Batch::seal_host_written(bytes), failure, skipped, dead_letters, accumulators })
    }

    /// The modules that asked for a look-back: their place in the chain
    /// and which stored records they want.
    pub fn lookbacks(&self) -> Vec<(usize, Lookback)> {
        self.stages.iter().enumerate().filter_map(|(i, stage)| stage.lookback.map(|l| (i, l))).collect()
    }

    /// Feeds stored records to the `look_back` function of the module at
    /// `stage`, before the stream's first batch. A failure ends the stream
    /// before it starts.
    pub fn look_back(&mut self, stage: usize, batch: &Batch) -> Result<(), EngineError> {
        let Some(stage) = self.stages.get_mut(stage) else {
            return Err(EngineError::InvalidBatch(abi::FormatError::new(format!("the chain has no stage {stage}"))));
        };
        let records = RecordIndex::new(batch.as_bytes())?;
        if records.is_empty() {
            return Ok(());
        }
        // A look-back batch has a budget of its own, as a batch does.
        let instance = stage.ensure_instance(&self.engine, &mut self.engine.limits().fuel_per_batch)?;
        let result = instance.look_back(batch.as_bytes(), &records);
        if let Err(error) = result {
            // A module that failed may have broken state: start afresh.
            stage.instance = None;
            return Err(error.into_engine_error(stage.module.name()));
        }
        Ok(())
    }

    /// Each module's name and metrics, in chain order.
    pub fn metrics(&self) -> Vec<(String, ModuleMetrics)> {
        self.stages.iter().map(|s| (s.module.name().to_string(), s.metrics.clone())).collect()
    }

    /// Each module's name and the answer layout (docs/abi.md) its running
    /// instance took: the newest both it and the engine speak. `None` for a
    /// module not running (before its first batch, or after a failure) or
    /// one of Fluvio's ABI.
    pub fn answer_layouts(&self) -> Vec<(String, Option<u32>)> {
        self.stages
            .iter()
            .map(|s| (s.module.name().to_string(), s.instance.as_ref().and_then(SmartModuleInstance::answer_layout)))
            .collect()
    }

    /// The modules, in chain order.
    pub fn modules(&self) -> impl Iterator<Item = &SmartModule> {
        self.stages.iter().map(|s| &s.module)
    }

    /// Log lines the modules wrote since the last call.
    pub fn take_logs(&mut self) -> Vec<GuestLog> {
        self.stages.iter_mut().filter_map(|s| s.instance.as_mut()).flat_map(|i| i.take_logs()).collect()
    }

    /// The error policy.
    pub fn policy(&self) -> ErrorPolicy {
        self.policy
    }
}

struct Stage {
    module: SmartModule,
    /// What stored records the module's `look_back` wants.
    lookback: Option<Lookback>,
    /// Parameters handed to `init` (again, when the instance is replaced).
    params: SmartModuleExtraParams,
    /// `None` after a failure: a trapped instance may have broken state, so
    /// it is replaced before the next batch.
    instance: Option<SmartModuleInstance>,
    metrics: ModuleMetrics,
    /// `metrics` as the observer was last told them.
    reported: ModuleMetrics,
    /// For an aggregate: the accumulator as of the end of the last batch,
    /// from which a replacement instance starts. In a window: the
    /// accumulator of the (key, window) being folded.
    accumulator: Option<Vec<u8>>,
    /// For an aggregate in a window: its open windows.
    window: Option<WindowState>,
}

struct StageOutput {
    batch: Vec<u8>,
    failures: Vec<RecordFailure>,
}

impl Stage {
    /// The stage's instance, started (setup, reservation, `init`) if there
    /// is none, on `fuel_left`: a replacement started for a batch is paid
    /// from that batch's budget, so that a module that panics cannot buy
    /// itself a fresh budget of setup and `init` with every panic.
    fn ensure_instance(
        &mut self,
        engine: &SmartEngine,
        fuel_left: &mut u64,
    ) -> Result<&mut SmartModuleInstance, EngineError> {
        if self.instance.is_none() {
            let started =
                SmartModuleInstance::start(engine, &self.module, &self.params, self.accumulator.as_deref(), *fuel_left);
            self.metrics.instantiations += 1;
            let instance = started?;
            *fuel_left = fuel_left.saturating_sub(instance.last_fuel_used());
            self.metrics.fuel_used += instance.last_fuel_used();
            self.instance = Some(instance);
        }
        Ok(self.instance.as_mut().expect("instance was just created"))
    }

    fn failure(
        &self,
        record: &RecordView<'_>,
        header: &abi::BatchHeader,
        input: &[u8],
        kind: String,
        message: String,
    ) -> RecordFailure {
        RecordFailure {
            module: self.module.name().to_string(),
            offset: header.base_offset.saturating_add(record.offset_delta as i64),
            timestamp: header.base_timestamp.saturating_add(record.timestamp_delta),
            kind,
            message,
            key: record.key.map(|(start, len)| input[start..start + len].to_vec()),
            value: input[record.value.0..record.value.0 + record.value.1].to_vec(),
        }
    }

    fn run(
        &mut self,
        engine: &SmartEngine,
        input: &[u8],
        policy: ErrorPolicy,
        fuel_left: &mut u64,
    ) -> Result<StageOutput, EngineError> {
        let flags = if matches!(policy, ErrorPolicy::Fail) { abi::FLAG_STOP_ON_ERROR } else { 0 };
        let mut failures = Vec::new();
        // After a panic the batch is retried without the record that
        // panicked (and, under `fail`, without anything after it).
        let mut retry: Option<Vec<u8>> = None;
        let started = Instant::now();
        let mut first_attempt = true;
        // The batch's budget is shared by the retries: a module that burns
        // most of it and then panics must not get it again for each record
        // it panics on.
        let mut panics = 0usize;
        loop {
            let bytes = retry.as_deref().unwrap_or(input);
            // Only the header before the call: the module's run brings the
            // batch into cache, and the records are indexed after it (see
            // `SmartModuleInstance::process`), or here when there is no
            // call or it panicked.
            let header = abi::BatchHeader::parse(bytes)?;
            if first_attempt {
                self.metrics.batches += 1;
                self.metrics.records_in += u64::from(header.record_count);
                first_attempt = false;
            }
            if header.record_count == 0 {
                RecordIndex::new(bytes)?;
                self.metrics.time += started.elapsed();
                return Ok(StageOutput { batch: bytes.to_vec(), failures });
            }
            if *fuel_left == 0 {
                self.metrics.time += started.elapsed();
                return Err(EngineError::CpuLimitExceeded {
                    module: self.module.name().to_string(),
                    limit: engine.limits().fuel_per_batch,
                });
            }
            let instance = self.ensure_instance(engine, fuel_left)?;
            let result = instance.process(bytes, flags, *fuel_left);
            *fuel_left = fuel_left.saturating_sub(instance.last_fuel_used());
            match result {
                Ok(ProcessOutput { batch, records_out, errors, last_value, fuel_used, records }) => {
                    self.metrics.records_out += records_out as u64;
                    self.metrics.errors += errors.len() as u64;
                    self.metrics.fuel_used += fuel_used;
                    self.metrics.time += started.elapsed();
                    if self.module.kind() == ModuleKind::Aggregate && last_value.is_some() {
                        self.accumulator = last_value;
                    }
                    for error in errors {
                        let record = records.view(bytes, error.index as usize)?;
                        failures.push(self.failure(&record, &header, bytes, error.kind, error.message));
                    }
                    if self.instance.as_ref().is_some_and(SmartModuleInstance::wants_restart) {
                        self.instance = None;
                    }
                    return Ok(StageOutput { batch, failures });
                }
                Err(CallError::Panic { message, record: Some(index) }) if index < header.record_count => {
                    let records = RecordIndex::new(bytes)?;
                    self.instance = None;
                    panics += 1;
                    // Each retry starts the module again, paid from the
                    // batch's budget; the count also stops a module whose
                    // panics are cheap.
                    if panics > MAX_PANICS_PER_BATCH {
                        self.metrics.time += started.elapsed();
                        return Err(EngineError::TooManyPanics {
                            module: self.module.name().to_string(),
                            limit: MAX_PANICS_PER_BATCH,
                        });
                    }
                    self.metrics.errors += 1;
                    let record = records.view(bytes, index as usize)?;
                    failures.push(self.failure(&record, &header, bytes, "panic".into(), message));
                    let keep: Vec<usize> = match policy {
                        ErrorPolicy::Fail => (0..index as usize).collect(),
                        _ => (0..records.len()).filter(|i| *i != index as usize).collect(),
                    };
                    retry = Some(sub_batch(bytes, &records, &keep));
                }
                Err(error) => {
                    self.instance = None;
                    self.metrics.time += started.elapsed();
                    return Err(error.into_engine_error(self.module.name()));
                }
            }
        }
    }
}

impl Stage {
    /// Runs a batch through the stage's windows; the module folds each
    /// (key, window)'s records.
    fn run_windowed(
        &mut self,
        engine: &SmartEngine,
        input: &[u8],
        policy: ErrorPolicy,
        finish: bool,
        fuel_left: &mut u64,
    ) -> Result<StageOutput, EngineError> {
        let mut window = self.window.take().expect("a windowed stage");
        let before = self.metrics.clone();
        let started = Instant::now();
        let records_in = RecordIndex::new(input).map(|records| records.len() as u64);
        let limit_bytes = engine.limits().memory_bytes;
        let result = window.process(input, policy, finish, limit_bytes, &mut |accumulator, batch, values| {
            self.fold(engine, policy, fuel_left, accumulator, batch, values)
        });
        self.window = Some(window);
        // Counted as one batch of the stage's input, whatever the number of
        // calls it took.
        self.metrics.batches = before.batches + 1;
        self.metrics.records_in = before.records_in + records_in.unwrap_or(0);
        self.metrics.time = before.time + started.elapsed();
        let output = result?;
        self.metrics.records_out = before.records_out + output.emitted;
        self.metrics.late += output.late;
        Ok(StageOutput { batch: output.batch, failures: output.failures })
    }

    /// Folds one (key, window)'s records into `accumulator`.
    fn fold(
        &mut self,
        engine: &SmartEngine,
        policy: ErrorPolicy,
        fuel_left: &mut u64,
        accumulator: &[u8],
        batch: &[u8],
        want_values: bool,
    ) -> Result<Folded, EngineError> {
        self.accumulator = Some(accumulator.to_vec());
        if let Some(instance) = self.instance.as_mut() {
            let set = instance.set_accumulator(&self.params, accumulator, *fuel_left);
            *fuel_left = fuel_left.saturating_sub(instance.last_fuel_used());
            self.metrics.fuel_used += instance.last_fuel_used();
            if let Err(error) = set {
                self.instance = None;
                return Err(error);
            }
        }
        let output = self.run(engine, batch, policy, fuel_left)?;
        let mut values = Vec::new();
        if want_values {
            // The output's offsets are the records' places in `batch`.
            let records = RecordIndex::new(&output.batch)?;
            for index in 0..records.len() {
                let record = records.view(&output.batch, index)?;
                let value = &output.batch[record.value.0..record.value.0 + record.value.1];
                values.push((record.offset_delta, value.to_vec()));
            }
        }
        let failures = output.failures.into_iter().map(|failure| (failure.offset as u32, failure)).collect();
        Ok(Folded { accumulator: self.accumulator.clone().unwrap_or_default(), values, failures })
    }
}

/// Most records of one batch a module may panic on before the batch fails.
pub const MAX_PANICS_PER_BATCH: usize = 100;

/// A batch with the same header as `input` holding only `keep`, whose
/// offset and timestamp deltas are unchanged.
fn sub_batch(input: &[u8], records: &RecordIndex, keep: &[usize]) -> Vec<u8> {
    let header = records.header();
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..abi::BATCH_HEADER_LEN]);
    for index in keep {
        out.extend_from_slice(records.bytes(input, *index).expect("index from the same batch"));
    }
    write_batch_header(&mut out, header.base_offset, keep.len() as u32, header.base_timestamp);
    out
}
