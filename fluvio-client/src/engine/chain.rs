//! Chains of SmartModules run batch by batch, with an error policy and
//! metrics for each module.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fluvio_smartmodule::abi::{self, RecordIndex, RecordView, SmartModuleKind};

use super::instance::{CallError, ProcessOutput};
use super::{EngineError, GuestLog, RecordFailure, SmartEngine, SmartModule, SmartModuleInstance};
use crate::batch::Batch;

/// Receives the records a chain with [`ErrorPolicy::DeadLetter`] could not
/// process, each with its error.
pub type DeadLetterSink = Arc<dyn Fn(RecordFailure) + Send + Sync>;

/// What a chain does when a module fails on a record.
#[derive(Clone, Default)]
pub enum ErrorPolicy {
    /// Emit the outputs for the records before the failed one, then report
    /// the failure; the stream should end there. The default.
    #[default]
    Fail,
    /// Drop the failed record, count it, and carry on.
    Skip,
    /// Hand the failed record and its error to the sink, and carry on.
    DeadLetter(DeadLetterSink),
}

impl ErrorPolicy {
    /// The policy's name as users write it: `fail`, `skip`, `dead-letter`.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorPolicy::Fail => "fail",
            ErrorPolicy::Skip => "skip",
            ErrorPolicy::DeadLetter(_) => "dead-letter",
        }
    }
}

impl std::fmt::Debug for ErrorPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How one module of a chain is invoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleConfig {
    /// Parameters handed to the module's `init`.
    pub params: BTreeMap<String, String>,
    /// The accumulator an aggregate starts from (empty when not given).
    pub initial_accumulator: Option<Vec<u8>>,
}

impl ModuleConfig {
    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets the initial accumulator of an aggregate.
    pub fn initial_accumulator(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.initial_accumulator = Some(value.into());
        self
    }
}

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
}

/// Builds a [`SmartModuleChain`].
pub struct ChainBuilder {
    engine: SmartEngine,
    modules: Vec<(SmartModule, ModuleConfig)>,
    policy: ErrorPolicy,
}

impl ChainBuilder {
    /// An empty chain on `engine`.
    pub fn new(engine: &SmartEngine) -> ChainBuilder {
        ChainBuilder { engine: engine.clone(), modules: Vec::new(), policy: ErrorPolicy::Fail }
    }

    /// Appends a module; records flow through modules in the order added.
    pub fn module(mut self, module: SmartModule, config: ModuleConfig) -> ChainBuilder {
        self.modules.push((module, config));
        self
    }

    /// Appends several modules, in order.
    pub fn modules(self, modules: impl IntoIterator<Item = (SmartModule, ModuleConfig)>) -> ChainBuilder {
        modules.into_iter().fold(self, |builder, (module, config)| builder.module(module, config))
    }

    /// Sets the error policy (default: [`ErrorPolicy::Fail`]).
    pub fn on_error(mut self, policy: ErrorPolicy) -> ChainBuilder {
        self.policy = policy;
        self
    }

    /// Instantiates every module and runs its setup and `init`, so that bad
    /// parameters are reported now rather than at the first record.
    pub fn build(self) -> Result<SmartModuleChain, EngineError> {
        let mut stages = Vec::with_capacity(self.modules.len());
        for (module, config) in self.modules {
            let mut stage = Stage {
                accumulator: config.initial_accumulator.clone(),
                module,
                config,
                instance: None,
                metrics: ModuleMetrics::default(),
            };
            stage.ensure_instance(&self.engine)?;
            stages.push(stage);
        }
        Ok(SmartModuleChain { engine: self.engine, stages, policy: self.policy })
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
    /// Records sent to the sink under [`ErrorPolicy::DeadLetter`] in this batch.
    pub dead_lettered: u64,
}

/// SmartModules applied one after the other to each batch. An aggregate's
/// accumulator lives on from batch to batch.
pub struct SmartModuleChain {
    engine: SmartEngine,
    stages: Vec<Stage>,
    policy: ErrorPolicy,
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
        let mut current: Option<Vec<u8>> = None;
        let mut failure: Option<RecordFailure> = None;
        let (mut skipped, mut dead_lettered) = (0, 0);
        for stage in &mut self.stages {
            let input = current.as_deref().unwrap_or(batch.as_bytes());
            let output = stage.run(&self.engine, input, &self.policy)?;
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
                    ErrorPolicy::DeadLetter(sink) => {
                        sink(stage_failure);
                        dead_lettered += 1;
                    }
                }
            }
            current = Some(output.batch);
        }
        let bytes = current.unwrap_or_else(|| batch.as_bytes().to_vec());
        Ok(ChainOutput { batch: Batch::seal(bytes), failure, skipped, dead_lettered })
    }

    /// Each module's name and metrics, in chain order.
    pub fn metrics(&self) -> Vec<(String, ModuleMetrics)> {
        self.stages.iter().map(|s| (s.module.name().to_string(), s.metrics.clone())).collect()
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
    pub fn policy(&self) -> &ErrorPolicy {
        &self.policy
    }
}

struct Stage {
    module: SmartModule,
    config: ModuleConfig,
    /// `None` after a failure: a trapped instance may have broken state, so
    /// it is replaced before the next batch.
    instance: Option<SmartModuleInstance>,
    metrics: ModuleMetrics,
    /// For an aggregate: the accumulator as of the end of the last batch,
    /// from which a replacement instance starts.
    accumulator: Option<Vec<u8>>,
}

struct StageOutput {
    batch: Vec<u8>,
    failures: Vec<RecordFailure>,
}

impl Stage {
    fn ensure_instance(&mut self, engine: &SmartEngine) -> Result<&mut SmartModuleInstance, EngineError> {
        if self.instance.is_none() {
            let instance =
                SmartModuleInstance::new(engine, &self.module, &self.config.params, self.accumulator.as_deref())?;
            self.metrics.instantiations += 1;
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
            offset: header.base_offset + record.offset_delta as i64,
            timestamp: header.base_timestamp + record.timestamp_delta,
            kind,
            message,
            key: record.key.map(|(start, len)| input[start..start + len].to_vec()),
            value: input[record.value.0..record.value.0 + record.value.1].to_vec(),
        }
    }

    fn run(&mut self, engine: &SmartEngine, input: &[u8], policy: &ErrorPolicy) -> Result<StageOutput, EngineError> {
        let flags = if matches!(policy, ErrorPolicy::Fail) { abi::FLAG_STOP_ON_ERROR } else { 0 };
        let mut failures = Vec::new();
        // After a panic the batch is retried without the record that
        // panicked (and, under `fail`, without anything after it).
        let mut retry: Option<Vec<u8>> = None;
        let started = Instant::now();
        let mut first_attempt = true;
        loop {
            let bytes = retry.as_deref().unwrap_or(input);
            let records = RecordIndex::new(bytes)?;
            let header = *records.header();
            if first_attempt {
                self.metrics.batches += 1;
                self.metrics.records_in += records.len() as u64;
                first_attempt = false;
            }
            if records.is_empty() {
                self.metrics.time += started.elapsed();
                return Ok(StageOutput { batch: bytes.to_vec(), failures });
            }
            let instance = self.ensure_instance(engine)?;
            let result = instance.process(bytes, &records, flags);
            match result {
                Ok(ProcessOutput { batch, records_out, errors, last_value, fuel_used }) => {
                    self.metrics.records_out += records_out as u64;
                    self.metrics.errors += errors.len() as u64;
                    self.metrics.fuel_used += fuel_used;
                    self.metrics.time += started.elapsed();
                    if self.module.kind() == SmartModuleKind::Aggregate && last_value.is_some() {
                        self.accumulator = last_value;
                    }
                    for (index, kind, message) in errors {
                        let record = records.view(bytes, index as usize)?;
                        failures.push(self.failure(&record, &header, bytes, kind, message));
                    }
                    return Ok(StageOutput { batch, failures });
                }
                Err(CallError::Panic { message, record: Some(index) }) if (index as usize) < records.len() => {
                    self.instance = None;
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

/// A batch with the same header as `input` holding only `keep`, whose
/// offset and timestamp deltas are unchanged.
fn sub_batch(input: &[u8], records: &RecordIndex, keep: &[usize]) -> Vec<u8> {
    let header = records.header();
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..abi::BATCH_HEADER_LEN]);
    for index in keep {
        out.extend_from_slice(records.bytes(input, *index).expect("index from the same batch"));
    }
    abi::write_batch_header(&mut out, header.base_offset, keep.len() as u32, header.base_timestamp);
    out
}
