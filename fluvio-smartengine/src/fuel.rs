//! The CPU cap: every module is rewritten before it is compiled so that it
//! pays fuel for what it runs, and traps when the fuel is gone.
//!
//! Code pays one unit per operator, so a loop pays on every turn. The fuel
//! used so far lives in a local variable of each function, which the
//! compiler keeps in a register: adding to it is one instruction. Each
//! straight-line stretch is paid for whole by one add where it starts
//! (see [`ends_stretch`]); a path that leaves a stretch early by a forward
//! branch pays for what it skipped, so what a path pays depends on the
//! path alone. It is compared with the limit only where control goes back
//! to a loop's start and as a function that makes calls is entered: every
//! endless run passes one of them (a loop turns through its back edge,
//! recursion through the entry of a function that calls), and the code
//! run between two checks is bounded by the size of the function and of
//! the functions without calls it calls, since without going back no
//! operator runs twice. A failed check branches to the function's one
//! stop, written after its body (see [`Stop`]). A counted loop (see
//! `counted_loops.rs`: the turns it takes are known as it starts) is
//! written twice, and the copy without checks on its turns runs when
//! those turns cost at most [`UNCHECKED_LOOP_UNITS`] and, under fuel, that
//! much is left of the budget: a hot loop of a few turns (a copy, a
//! search through a value) then pays its one look as it starts, and still
//! its add on every turn, so the fuel counted is the same. Bulk operations
//! (`memory.fill`, `memory.copy`, `memory.init`, and the table
//! equivalents) do work in proportion to a length known only at run time;
//! priced as one operator, a loop of 256 MiB fills would run for hours on a
//! budget meant for seconds. They also pay one unit per
//! 2^[`BYTES_PER_FUEL_SHIFT`] bytes (or table entries) of that length,
//! charged and checked before they run.
//!
//! The rewrite adds three globals, exported under names the host reserves
//! (a module's own exports of those names are dropped): the fuel used, the
//! limit it may reach, and a flag set when the module ran out. A function
//! takes the used fuel from its global on entry and after every call, and
//! writes it back before every call, wherever it returns, before an
//! `unreachable` (where a Rust panic ends) and when it runs out, so that
//! the host (and each callee) knows it, also when the module panics: the
//! engine retries a batch after a guest's panic on what is left of the
//! batch's budget. It is not written back at a loop's back edge, where
//! nothing reads it: only a trap of the machine's own (an access out of
//! bounds), which fails the batch, leaves it a loop short. The guest compares with `limit`,
//! which it only ever reads: so another thread can stop a running module by
//! lowering `limit` (see `watchdog.rs`). A single "remaining" counter would
//! not do: the guest's write of it, in flight in the store buffer of a
//! tight loop, overwrites a store from another thread nearly every time.
//!
//! With [`Metering::Deadline`] nothing is counted: the rewrite only adds,
//! at the same places as the fuel's checks (a branch back to a loop's
//! start, the entry of a function that makes calls), a look at `limit`,
//! and traps when the watchdog has set it to zero. That is a load, a test
//! and a branch where control goes back, without the adds of every
//! stretch and the writes of `used` around calls; a module runs about 10%
//! faster, and its cap is the call's wall-clock limit alone.
//!
//! Why a rewrite of the module's bytes and not a compiler middleware (this
//! module was one until 2026-12-03): a middleware cannot add locals, so the
//! fuel lived in a global, loaded and stored at every basic block. Counted
//! with cachegrind, the rewrite runs 14% to 22% fewer instructions per
//! record than the middleware did (docs/benchmarks.md).

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{ConstExpr, ExportKind, Function, GlobalType, Instruction, SectionId, ValType};
use wasmparser::{CompositeInnerType, ExternalKind, Operator, Parser, Payload, TypeRef, Validator, WasmFeatures};

use crate::Metering;
use crate::counted_loops::{CountedLoop, Piece, Pieces, Target};
use crate::stack_args::{ScratchLocals, ScratchNeeds, Signatures, Widening};

/// Export name of the fuel-used global (i64, counts up from 0).
pub(crate) const USED_EXPORT: &str = "fluvio_fuel_used";
/// Export name of the fuel-limit global (i64): the module traps once `used`
/// goes past it.
pub(crate) const LIMIT_EXPORT: &str = "fluvio_fuel_limit";
/// Export name of the ran-out flag (i32, 1 once the module trapped for fuel).
pub(crate) const EXHAUSTED_EXPORT: &str = "fluvio_fuel_exhausted";

/// Bytes (or table entries) of a bulk operation that cost one unit of fuel,
/// as a power of two (3: eight bytes). That keeps a bulk byte within a small
/// factor of the time an instruction takes, so the budget means about the
/// same wall-clock time whichever way a module spends it.
pub(crate) const BYTES_PER_FUEL_SHIFT: i64 = 3;

/// The WebAssembly a SmartModule may use, as the rewrite checks it before
/// touching it: the same proposals as the engine's compiler
/// (`smartmodule_features` in lib.rs), so that every operator the rewrite
/// meets is one it knows how to price.
fn features() -> WasmFeatures {
    WasmFeatures::WASM2 | WasmFeatures::EXTENDED_CONST
}

/// Returns `wasm` with `metering` added, or why it cannot be: the
/// module is invalid, or uses an operator the metering does not know.
pub(crate) fn instrument(wasm: &[u8], metering: Metering) -> Result<Vec<u8>, String> {
    instrument_on(wasm, metering, std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// [`instrument`], with the function bodies of a large module rewritten
/// on up to `threads` threads.
fn instrument_on(wasm: &[u8], metering: Metering, threads: usize) -> Result<Vec<u8>, String> {
    Validator::new_with_features(features()).validate_all(wasm).map_err(|error| error.to_string())?;
    let layout = Layout::read(wasm).map_err(|error| error.to_string())?;
    let mut rewrite =
        Rewrite { layout, metering, threads, defined_functions: 0, globals_added: false, exports_added: false };
    let mut module = wasm_encoder::Module::new();
    rewrite.parse_core_module(&mut module, Parser::new(0), wasm).map_err(|error| error.to_string())?;
    Ok(module.finish())
}

/// What the rewrite needs to know of a module before it starts writing.
#[derive(Default, Clone)]
struct Layout {
    /// For each type index, its parameter count (0 for non-function types).
    type_params: Vec<u32>,
    /// For each type index, its results (none for non-function types).
    type_results: Vec<Vec<wasmparser::ValType>>,
    /// For each defined function, its type index.
    function_types: Vec<u32>,
    imported_globals: u32,
    defined_globals: u32,
    /// The signatures whose stack arguments are widened (`stack_args.rs`).
    widening: Widening,
}

impl Layout {
    fn read(wasm: &[u8]) -> Result<Layout, wasmparser::BinaryReaderError> {
        let mut layout = Layout::default();
        let mut signatures = Signatures::default();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        for sub_type in group?.types() {
                            let (params, results) = match &sub_type.composite_type.inner {
                                CompositeInnerType::Func(func) => {
                                    signatures.types.push(Some((func.params().to_vec(), func.results().to_vec())));
                                    (func.params().len() as u32, func.results().to_vec())
                                }
                                _ => {
                                    signatures.types.push(None);
                                    (0, Vec::new())
                                }
                            };
                            layout.type_params.push(params);
                            layout.type_results.push(results);
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        match import?.ty {
                            TypeRef::Global(_) => layout.imported_globals += 1,
                            TypeRef::Func(type_index) => signatures.imported_functions.push(type_index),
                            TypeRef::Table(_) => signatures.imports_table = true,
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for type_index in reader {
                        layout.function_types.push(type_index?);
                    }
                }
                Payload::GlobalSection(reader) => layout.defined_globals = reader.count(),
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export?;
                        if export.kind == ExternalKind::Func {
                            signatures.exported_functions.push(export.index);
                        }
                    }
                }
                _ => {}
            }
        }
        signatures.defined_functions = layout.function_types.clone();
        layout.widening = Widening::plan(&signatures);
        Ok(layout)
    }

    /// The index of the used-fuel global; the limit and the flag follow.
    fn used_global(&self) -> u32 {
        self.imported_globals + self.defined_globals
    }
}

/// Where a check that fails goes.
#[derive(Clone, Copy)]
enum Stop {
    /// A branch this many labels out, to the function's one stop, written
    /// once after its body: each check is then a compare and a `br_if`,
    /// one block fewer for the compiler than an `if` holding a stop of its
    /// own.
    Branch(u32),
    /// A stop of its own in an `if`: in a function that returns several
    /// values, which the block around its body could only name by a type
    /// the module may not have.
    Inline,
}

/// The global indexes and locals one function's metering uses.
#[derive(Clone, Copy)]
struct Meter {
    used: u32,
    limit: u32,
    exhausted: u32,
    /// Local holding the used fuel while the function runs.
    fuel: u32,
    /// Local parking a bulk operation's length while it is priced.
    length: u32,
}

struct Rewrite {
    layout: Layout,
    metering: Metering,
    /// Threads a large module's function bodies are rewritten on.
    threads: usize,
    defined_functions: usize,
    globals_added: bool,
    exports_added: bool,
}

/// The order of a module's sections, for finding where a section the
/// module lacks must go.
fn section_rank(id: SectionId) -> u8 {
    match id {
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
        _ => u8::MAX,
    }
}

impl Rewrite {
    fn add_globals(&mut self, globals: &mut wasm_encoder::GlobalSection) {
        let variable = |val_type| GlobalType { val_type, mutable: true, shared: false };
        // A limit of zero until the host sets a budget before each call.
        globals.global(variable(ValType::I64), &ConstExpr::i64_const(0));
        globals.global(variable(ValType::I64), &ConstExpr::i64_const(0));
        globals.global(variable(ValType::I32), &ConstExpr::i32_const(0));
        self.globals_added = true;
    }

    fn add_exports(&mut self, exports: &mut wasm_encoder::ExportSection) {
        let used = self.layout.used_global();
        exports.export(USED_EXPORT, ExportKind::Global, used);
        exports.export(LIMIT_EXPORT, ExportKind::Global, used + 1);
        exports.export(EXHAUSTED_EXPORT, ExportKind::Global, used + 2);
        self.exports_added = true;
    }
}

/// Operators that end a basic block or start one: where control may go
/// back, leave the function or call, each of which the metering must
/// look at. Those the rewrite does not handle on their own are refused
/// (the validation's features keep them out; this keeps a new one from
/// slipping through unpriced).
fn ends_block(operator: &Operator) -> bool {
    matches!(
        operator,
        Operator::Loop { .. }
            | Operator::End
            | Operator::If { .. }
            | Operator::Else
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::CallRef { .. }
            | Operator::ReturnCallRef { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. }
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::Catch { .. }
            | Operator::CatchAll
            | Operator::Try { .. }
            | Operator::TryTable { .. }
    )
}

/// Bulk operations whose last operand (on top of the stack) is an i32
/// count of bytes or table entries. With memory64 and table64 turned off
/// (see [`features`]), the count is always an i32.
pub(crate) fn is_bulk(operator: &Operator) -> bool {
    matches!(
        operator,
        Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::TableGrow { .. }
    )
}

/// Keeps `labels` (the open blocks, innermost last, `true` for a loop's)
/// up to date past `operator`.
fn track_labels(labels: &mut Vec<bool>, operator: &Operator) {
    match operator {
        Operator::Block { .. } | Operator::If { .. } => labels.push(false),
        Operator::Loop { .. } => labels.push(true),
        Operator::End => {
            labels.pop();
        }
        _ => {}
    }
}

/// Whether any target of a `br_table` is one `wanted` holds for.
fn any_target(
    targets: &wasmparser::BrTable<'_>,
    wanted: impl Fn(u32) -> bool,
) -> Result<bool, wasmparser::BinaryReaderError> {
    let mut any = wanted(targets.default());
    for target in targets.targets() {
        any |= wanted(target?);
    }
    Ok(any)
}

/// Whether a branch `relative_depth` labels out goes back to a loop's
/// start: where the deadline looks.
fn goes_back(labels: &[bool], relative_depth: u32) -> bool {
    labels.len().checked_sub(1 + relative_depth as usize).is_some_and(|index| labels[index])
}

/// Whether a branch `relative_depth` labels out leaves the function.
fn goes_out(labels: &[bool], relative_depth: u32) -> bool {
    relative_depth as usize >= labels.len()
}

/// Whether a branch `relative_depth` labels out goes back to a loop's
/// start or leaves the function: where the used fuel is written back and
/// checked. A branch forward to the end of a block cannot make code run
/// again, so it only adds.
fn goes_back_or_out(labels: &[bool], relative_depth: u32) -> bool {
    match labels.len().checked_sub(1 + relative_depth as usize) {
        Some(index) => labels[index],
        None => true,
    }
}

/// Whether a new stretch starts after `operator`, with `labels` as they
/// are before it. Each stretch is paid for in full as it starts, by one
/// add.
///
/// A forward `br_if` does not end a stretch: the path that falls through
/// (a loop's usual path) pays one add for several such branches, and the
/// path that branches pays for the rest of the stretch it skipped. That
/// is at most the function's size and the same on every run, so the fuel
/// stays deterministic. A new stretch starts where code may run a number
/// of times other than the stretch before it: a loop's body, each arm of
/// an `if`, after a branch back to a loop's start (whose falling through
/// happens once and not every turn), and after a branch that always
/// leaves. The code after a block's, an `if`'s or a loop's `end` starts
/// none: it belongs to the stretch their start was in (see
/// [`stretch_costs`]).
fn ends_stretch(labels: &[bool], operator: &Operator) -> bool {
    match operator {
        Operator::BrIf { relative_depth } => {
            !goes_out(labels, *relative_depth) && goes_back_or_out(labels, *relative_depth)
        }
        Operator::Loop { .. }
        | Operator::If { .. }
        | Operator::Else
        | Operator::Br { .. }
        | Operator::BrTable { .. }
        | Operator::Return
        | Operator::Unreachable => true,
        _ => false,
    }
}

/// Whether `body` calls a function, directly or through a table.
fn makes_calls(body: &wasmparser::FunctionBody<'_>) -> Result<bool, wasmparser::BinaryReaderError> {
    let mut operators = body.get_operators_reader()?;
    while !operators.eof() {
        if matches!(operators.read()?, Operator::Call { .. } | Operator::CallIndirect { .. }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The cost of each stretch of `body`, in the order they start: one unit
/// per operator.
///
/// A stretch need not be contiguous: the code after a block, an `if` or a
/// loop goes on with the stretch their start was in. Control enters them
/// only at their start, and leaves a loop's body at most once per entry,
/// so every path that reaches the code after their `end` passed that
/// stretch's add once (a path that branched out further pays for what it
/// skipped, as above). That spares an add at each join: 2% to 4% of a
/// module's fuel instructions, and code for the compiler.
fn stretch_costs(body: &wasmparser::FunctionBody<'_>) -> Result<Vec<u64>, wasmparser::BinaryReaderError> {
    let mut costs = vec![0u64];
    let mut current = 0;
    // For each open block, `if` and loop, the stretch its start was in.
    let mut resumed: Vec<usize> = Vec::new();
    let mut labels: Vec<bool> = Vec::new();
    let mut operators = body.get_operators_reader()?;
    while !operators.eof() {
        let operator = operators.read()?;
        costs[current] += 1;
        match operator {
            Operator::Block { .. } | Operator::If { .. } | Operator::Loop { .. } => resumed.push(current),
            Operator::End => {
                if let Some(stretch) = resumed.pop() {
                    current = stretch;
                }
            }
            _ => {}
        }
        if ends_stretch(&labels, &operator) {
            costs.push(0);
            current = costs.len() - 1;
        }
        track_labels(&mut labels, &operator);
    }
    Ok(costs)
}

impl Meter {
    /// `fuel += cost`: a register add.
    fn add(&self, function: &mut Function, cost: u64) {
        if cost > 0 {
            function
                .instruction(&Instruction::LocalGet(self.fuel))
                .instruction(&Instruction::I64Const(cost as i64))
                .instruction(&Instruction::I64Add)
                .instruction(&Instruction::LocalSet(self.fuel));
        }
    }

    /// `used = fuel`: where the host and callees read it.
    fn store(&self, function: &mut Function) {
        function.instruction(&Instruction::LocalGet(self.fuel)).instruction(&Instruction::GlobalSet(self.used));
    }

    /// `fuel = used`: on entry and after a call, which spent some.
    fn load(&self, function: &mut Function) {
        function.instruction(&Instruction::GlobalGet(self.used)).instruction(&Instruction::LocalSet(self.fuel));
    }

    /// `used = fuel; if fuel > limit { exhausted = 1; trap }`: where a
    /// branch leaves the function, whose caller reads `used`, and before a
    /// bulk operation. Neither
    /// sum can overflow: costs are below 2^32 a block and the host keeps
    /// limits below 2^62.
    fn check(&self, function: &mut Function, stop: Stop) {
        self.store(function);
        self.check_loop(function, stop);
    }

    /// `if fuel > limit { used = fuel; exhausted = 1; trap }`: at a branch
    /// back to a loop's start, where nothing reads `used` unless the
    /// module stops. Not writing it back on every turn takes a store off
    /// every loop (2% to 3% of a module's time); a module that then traps
    /// of its own accord writes it first (see `Operator::Unreachable`), so
    /// only a trap of the machine's (an access out of bounds, a division
    /// by zero), which fails the batch, leaves the count a loop short.
    fn check_loop(&self, function: &mut Function, stop: Stop) {
        function
            .instruction(&Instruction::LocalGet(self.fuel))
            .instruction(&Instruction::GlobalGet(self.limit))
            .instruction(&Instruction::I64GtS);
        self.stop_if(function, stop, Metering::Fuel);
    }

    /// `if limit == 0 { exhausted = 1; trap }`: the deadline's look at
    /// whether the watchdog has stopped the call.
    fn check_deadline(&self, function: &mut Function, stop: Stop) {
        function.instruction(&Instruction::GlobalGet(self.limit)).instruction(&Instruction::I64Eqz);
        self.stop_if(function, stop, Metering::Deadline);
    }

    /// Stops the module if the condition on top of the stack holds: by a
    /// branch to the function's stop, or by a stop of its own.
    fn stop_if(&self, function: &mut Function, stop: Stop, metering: Metering) {
        match stop {
            Stop::Branch(depth) => {
                function.instruction(&Instruction::BrIf(depth));
            }
            Stop::Inline => {
                function.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
                self.stop(function, metering);
                function.instruction(&Instruction::End);
            }
        }
    }

    /// `used = fuel` (under fuel), `exhausted = 1; trap`.
    fn stop(&self, function: &mut Function, metering: Metering) {
        if metering == Metering::Fuel {
            self.store(function);
        }
        function
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::GlobalSet(self.exhausted))
            .instruction(&Instruction::Unreachable);
    }

    /// Prices the length on top of the stack, leaving it there.
    fn charge_length(&self, function: &mut Function, stop: Stop) {
        function
            .instruction(&Instruction::LocalTee(self.length))
            .instruction(&Instruction::I64ExtendI32U)
            .instruction(&Instruction::I64Const(BYTES_PER_FUEL_SHIFT))
            .instruction(&Instruction::I64ShrU)
            .instruction(&Instruction::LocalGet(self.fuel))
            .instruction(&Instruction::I64Add)
            .instruction(&Instruction::LocalSet(self.fuel));
        self.check(function, stop);
        function.instruction(&Instruction::LocalGet(self.length));
    }
}

/// The most a counted loop may cost, in operators, to run with no look at
/// the budget on its turns: about a tenth of a millisecond. Under the
/// deadline, that is how late the watchdog's stop may come; under fuel,
/// a loop runs so only while that much is left of the budget, so it can
/// never go past it.
const UNCHECKED_LOOP_UNITS: u64 = 1 << 16;

/// Where an operator is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Once, as the module has it.
    Once,
    /// In a counted loop, which is written twice, in the two arms of an
    /// `if` the rewrite adds: branches out of the loop cross one label
    /// more. `unchecked` for the arm taken when the turns are known to be
    /// few, which looks at the budget on none of them.
    Twice { loop_label: usize, unchecked: bool },
}

/// One function body as the rewrite writes it.
struct Body {
    meter: Meter,
    metering: Metering,
    function: Function,
    /// The labels of the open blocks, innermost last: `true` for a loop's,
    /// which a branch goes back to. A branch one further out than the last
    /// leaves the function; the `end` with none open is the function's own.
    labels: Vec<bool>,
    /// What each stretch not yet started costs, in order (fuel only).
    stretch_costs: std::vec::IntoIter<u64>,
    /// Whether the body is held in a block, after which the function's one
    /// stop is written (see [`Stop`]).
    shared_stop: bool,
    /// The widened parameters (`stack_args.rs`) and the `i32` locals that
    /// stand for them in the body.
    param_locals: Vec<(u32, u32)>,
    /// Where calls park the arguments they widen.
    scratch: ScratchLocals,
}

impl Body {
    /// The local the body's `local` is now: a widened parameter's stand-in.
    fn local(&self, local: u32) -> u32 {
        self.param_locals.iter().find(|(param, _)| *param == local).map_or(local, |(_, stand_in)| *stand_in)
    }

    /// `operator`, reading and writing a widened parameter's stand-in.
    fn with_locals<'a>(&self, operator: Operator<'a>) -> Operator<'a> {
        if self.param_locals.is_empty() {
            return operator;
        }
        match operator {
            Operator::LocalGet { local_index } => Operator::LocalGet { local_index: self.local(local_index) },
            Operator::LocalSet { local_index } => Operator::LocalSet { local_index: self.local(local_index) },
            Operator::LocalTee { local_index } => Operator::LocalTee { local_index: self.local(local_index) },
            other => other,
        }
    }

    /// Where a check written here goes when it fails: past the open
    /// labels and the block around the body (and, in a copy of a counted
    /// loop, the `if` that holds the copies) to the function's stop.
    fn stop(&self, written: Written) -> Stop {
        if !self.shared_stop {
            return Stop::Inline;
        }
        let in_copy = matches!(written, Written::Twice { .. });
        Stop::Branch(self.labels.len() as u32 + 1 + u32::from(in_copy))
    }

    /// Pays for the stretch that starts here (fuel only).
    fn start_stretch(&mut self) {
        if self.metering == Metering::Fuel {
            let cost = self.stretch_costs.next().unwrap_or(0);
            self.meter.add(&mut self.function, cost);
        }
    }

    /// Pushes whether `counted` may run unchecked: its turns, as its
    /// counter stands, are so few that they cost at most
    /// [`UNCHECKED_LOOP_UNITS`] operators, and under fuel, that much is
    /// left of the budget. The distance the counter must travel (in the
    /// step's direction, wrapping as the counter does) must be a whole
    /// number of steps: otherwise it steps past the target for ever.
    fn push_may_run_unchecked(&mut self, counted: &CountedLoop) {
        let target = match counted.target {
            Target::Zero => Instruction::I32Const(0),
            Target::Constant(value) => Instruction::I32Const(value),
            Target::Local(local) => Instruction::LocalGet(self.local(local)),
        };
        let counter = Instruction::LocalGet(self.local(counted.counter));
        let (from, to) = if counted.step > 0 { (target, counter) } else { (counter, target) };
        let stride = counted.step.unsigned_abs();
        // At most this many turns, each paying at most the loop's operators.
        let turns = UNCHECKED_LOOP_UNITS / counted.operators as u64;
        let farthest = (turns * u64::from(stride)).min(u64::from(u32::MAX)) as u32;
        let function = &mut self.function;
        // distance = from - to; distance - 1 < farthest, so 1 ..= farthest
        // (a distance of 0 is a whole turn of the counter's range).
        function
            .instruction(&from)
            .instruction(&to)
            .instruction(&Instruction::I32Sub)
            .instruction(&Instruction::LocalTee(self.meter.length))
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I32Sub)
            .instruction(&Instruction::I32Const(farthest as i32))
            .instruction(&Instruction::I32LtU);
        if stride > 1 {
            function
                .instruction(&Instruction::LocalGet(self.meter.length))
                .instruction(&Instruction::I32Const((stride - 1) as i32))
                .instruction(&Instruction::I32And)
                .instruction(&Instruction::I32Eqz)
                .instruction(&Instruction::I32And);
        }
        if self.metering == Metering::Fuel {
            function
                .instruction(&Instruction::LocalGet(self.meter.fuel))
                .instruction(&Instruction::I64Const(UNCHECKED_LOOP_UNITS as i64))
                .instruction(&Instruction::I64Add)
                .instruction(&Instruction::GlobalGet(self.meter.limit))
                .instruction(&Instruction::I64LeS)
                .instruction(&Instruction::I32And);
        }
    }
}

impl Rewrite {
    /// Writes `operator` with its metering; returns whether a stretch
    /// starts after it, which the caller pays for.
    fn operator(
        &mut self,
        body: &mut Body,
        operator: Operator<'_>,
        written: Written,
    ) -> Result<bool, reencode::Error<String>> {
        let operator = body.with_locals(operator);
        let checks = !matches!(written, Written::Twice { unchecked: true, .. });
        let stop = body.stop(written);
        let labels = &body.labels;
        let meter = body.meter;
        let function = &mut body.function;
        let mut next_stretch = false;
        let mut reload_after = false;
        match body.metering {
            Metering::Deadline => {
                let looks = match &operator {
                    Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                        goes_back(labels, *relative_depth)
                    }
                    Operator::BrTable { targets } => any_target(targets, |depth| goes_back(labels, depth))?,
                    // Looked at where they arrive, by the callee (see
                    // `rewrite_function`).
                    Operator::Call { .. } | Operator::CallIndirect { .. } => false,
                    // The same operators the fuel refuses: a way of leaving or
                    // repeating code the deadline would not look at.
                    other if ends_block(other) && !is_structured(other) => {
                        return Err(reencode::Error::UserError(format!(
                            "the deadline metering does not support the operator {other:?}"
                        )));
                    }
                    _ => false,
                };
                if looks && checks {
                    meter.check_deadline(function, stop);
                }
            }
            Metering::Fuel => {
                let ends_function = matches!(operator, Operator::End) && labels.is_empty();
                next_stretch = ends_stretch(labels, &operator) && !ends_function;
                if matches!(operator, Operator::Unreachable) {
                    // The module stops here of its own accord (a Rust panic
                    // ends so): the host charges the batch what it spent.
                    meter.store(function);
                } else if is_bulk(&operator) {
                    meter.charge_length(function, stop);
                } else if ends_block(&operator) {
                    match &operator {
                        // Control only falls through, or goes forward: checked
                        // where it may go back.
                        Operator::Loop { .. } | Operator::If { .. } | Operator::Else => {}
                        Operator::End if !ends_function => {}
                        Operator::End | Operator::Return => meter.store(function),
                        Operator::Br { relative_depth } | Operator::BrIf { relative_depth } if checks => {
                            if goes_out(labels, *relative_depth) {
                                meter.check(function, stop);
                            } else if goes_back_or_out(labels, *relative_depth) {
                                meter.check_loop(function, stop);
                            }
                        }
                        Operator::BrTable { targets } if checks => {
                            if any_target(targets, |depth| goes_back_or_out(labels, depth))? {
                                meter.check(function, stop);
                            }
                        }
                        Operator::Br { .. } | Operator::BrIf { .. } | Operator::BrTable { .. } => {}
                        // The callee compares (see `rewrite_function`).
                        Operator::Call { .. } | Operator::CallIndirect { .. } => {
                            meter.store(function);
                            reload_after = true;
                        }
                        other => {
                            return Err(reencode::Error::UserError(format!(
                                "the fuel metering does not support the operator {other:?}"
                            )));
                        }
                    }
                }
            }
        }
        // Branches, the only operators a copy changes, open or close no
        // label: the labels past the operator are those it sees.
        track_labels(&mut body.labels, &operator);
        let widening = &self.layout.widening;
        let call = match operator {
            Operator::Call { function_index } => widening.direct_call(function_index),
            Operator::CallIndirect { type_index, .. } => widening.indirect_call(type_index),
            _ => None,
        };
        let widened_indirect = match (&call, &operator) {
            (Some(call), Operator::CallIndirect { table_index, .. }) => {
                Some(Instruction::CallIndirect { type_index: call.new_type(), table_index: *table_index })
            }
            _ => None,
        };
        if let Some(call) = call {
            call.widen(&mut body.function, &body.scratch);
        }
        let instruction = match (widened_indirect, written) {
            (Some(instruction), _) => instruction,
            (None, Written::Twice { loop_label, .. }) => self.in_copy(&body.labels, loop_label, operator)?,
            (None, Written::Once) => self.instruction(operator)?,
        };
        body.function.instruction(&instruction);
        if reload_after {
            meter.load(&mut body.function);
        }
        Ok(next_stretch)
    }

    /// `operator` as written in a copy of a counted loop whose label is
    /// `loop_label` in `labels`: a branch to a label outside the loop
    /// crosses the `if` that holds the copies.
    fn in_copy<'a>(
        &mut self,
        labels: &[bool],
        loop_label: usize,
        operator: Operator<'a>,
    ) -> Result<Instruction<'a>, reencode::Error<String>> {
        let depth = |relative_depth: u32| {
            let outside = labels.len().checked_sub(1 + relative_depth as usize).is_none_or(|label| label < loop_label);
            relative_depth + u32::from(outside)
        };
        Ok(match operator {
            Operator::Br { relative_depth } => Instruction::Br(depth(relative_depth)),
            Operator::BrIf { relative_depth } => Instruction::BrIf(depth(relative_depth)),
            Operator::BrTable { targets } => {
                let default = depth(targets.default());
                let targets = targets.targets().map(|target| target.map(depth)).collect::<Result<Vec<_>, _>>()?;
                Instruction::BrTable(targets.into(), default)
            }
            other => self.instruction(other)?,
        })
    }

    /// Writes a counted loop (its operators, `loop` to `end`) twice: a
    /// copy without looks at the budget, taken when its turns are known
    /// to be few, and the usual one.
    fn counted_loop(
        &mut self,
        body: &mut Body,
        counted: &CountedLoop,
        operators: Vec<Operator<'_>>,
    ) -> Result<(), reencode::Error<String>> {
        let Some(Operator::Loop { blockty }) = operators.first() else {
            return Err(reencode::Error::UserError("a counted loop that does not start with `loop`".to_string()));
        };
        let block_type = self.block_type(*blockty)?;
        body.push_may_run_unchecked(counted);
        body.function.instruction(&Instruction::If(block_type));
        let loop_label = body.labels.len();
        let labels = body.labels.clone();
        let stretch_costs = body.stretch_costs.clone();
        for operator in operators.iter().cloned() {
            if self.operator(body, operator, Written::Twice { loop_label, unchecked: true })? {
                body.start_stretch();
            }
        }
        body.function.instruction(&Instruction::Else);
        body.labels = labels;
        body.stretch_costs = stretch_costs;
        for operator in operators {
            if self.operator(body, operator, Written::Twice { loop_label, unchecked: false })? {
                body.start_stretch();
            }
        }
        // The code after the loop goes on with the stretch before it.
        body.function.instruction(&Instruction::End);
        Ok(())
    }
}

/// Block-structure operators that neither leave nor repeat code on their
/// own.
fn is_structured(operator: &Operator) -> bool {
    matches!(operator, Operator::Loop { .. } | Operator::End | Operator::If { .. } | Operator::Else | Operator::Return)
}

impl Reencode for Rewrite {
    type Error = String;

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_type_section(self, types, section)?;
        // The widened signatures (`stack_args.rs`), after the module's own.
        let widening = std::mem::take(&mut self.layout.widening);
        for (params, results) in widening.new_types() {
            let params = params.iter().map(|ty| self.val_type(*ty)).collect::<Result<Vec<_>, _>>()?;
            let results = results.iter().map(|ty| self.val_type(*ty)).collect::<Result<Vec<_>, _>>()?;
            types.ty().function(params, results);
        }
        self.layout.widening = widening;
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        for type_index in section {
            functions.function(self.layout.widening.function_type(type_index?));
        }
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        self.add_globals(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        for export in section {
            let export = export?;
            // The host finds the fuel by these names: a module must not
            // hand it globals of its own under them.
            if ![USED_EXPORT, LIMIT_EXPORT, EXHAUSTED_EXPORT].contains(&export.name) {
                self.parse_export(exports, export)?;
            }
        }
        self.add_exports(exports);
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        // Copied as they are, names included: the rewrite changes no index
        // a custom section can name (a function's new locals come after its
        // own), and a section the re-encoder cannot read, which the
        // compiler would ignore, must not cost a module its load.
        let copy = self.custom_section(section)?;
        module.section(&copy);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), reencode::Error<String>> {
        let next = before.map_or(u8::MAX, section_rank);
        if !self.globals_added && next > section_rank(SectionId::Global) {
            let mut globals = wasm_encoder::GlobalSection::new();
            self.add_globals(&mut globals);
            module.section(&globals);
        }
        if !self.exports_added && next > section_rank(SectionId::Export) {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<String>> {
        let bodies = section.into_iter().collect::<Result<Vec<_>, _>>()?;
        let first = self.defined_functions;
        self.defined_functions += bodies.len();
        for function in self.rewrite_functions(first, &bodies)? {
            code.function(&function);
        }
        Ok(())
    }

    // Not reached while `parse_code_section` above is: kept so that no
    // path of the re-encoder ever writes a body without its metering.
    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<String>> {
        let function = self.rewrite_function(self.defined_functions, &body)?;
        self.defined_functions += 1;
        code.function(&function);
        Ok(())
    }
}

/// Bytes of function bodies below which a module is rewritten on one
/// thread: starting threads would cost more than they save.
const PARALLEL_REWRITE_BYTES: usize = 256 << 10;

impl Rewrite {
    /// The defined functions `first`, `first + 1`... with their metering, in
    /// order. A large module's are rewritten on `threads` threads (as many
    /// as there are cores), each a run of functions of about the same size
    /// (the regex scrubber's rewrite is a tenth of its compile).
    fn rewrite_functions(
        &self,
        first: usize,
        bodies: &[wasmparser::FunctionBody<'_>],
    ) -> Result<Vec<Function>, reencode::Error<String>> {
        let total: usize = bodies.iter().map(|body| body.as_bytes().len()).sum();
        let threads = self.threads.min(bodies.len());
        let mut worker = self.worker();
        if total < PARALLEL_REWRITE_BYTES || threads < 2 {
            return bodies.iter().enumerate().map(|(n, body)| worker.rewrite_function(first + n, body)).collect();
        }
        // Runs of about `total / threads` bytes each, in order.
        let mut runs = Vec::with_capacity(threads);
        let (mut start, mut bytes) = (0, 0);
        for (n, body) in bodies.iter().enumerate() {
            bytes += body.as_bytes().len();
            if bytes * threads >= total * (runs.len() + 1) || n + 1 == bodies.len() {
                runs.push(start..n + 1);
                start = n + 1;
            }
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = runs
                .into_iter()
                .map(|run| {
                    let mut worker = self.worker();
                    scope.spawn(move || {
                        run.map(|n| worker.rewrite_function(first + n, &bodies[n])).collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut functions = Vec::with_capacity(bodies.len());
            for handle in handles {
                let run = handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                functions.extend(run);
            }
            Ok(functions)
        })
    }

    /// A rewrite of function bodies alone, for a thread of its own.
    fn worker(&self) -> Rewrite {
        Rewrite {
            layout: self.layout.clone(),
            metering: self.metering,
            threads: 1,
            defined_functions: 0,
            globals_added: true,
            exports_added: true,
        }
    }

    /// The scratch locals the calls of `body` need to widen their
    /// arguments (`stack_args.rs`).
    fn scratch_needs(
        &self,
        body: &wasmparser::FunctionBody<'_>,
    ) -> Result<ScratchNeeds, wasmparser::BinaryReaderError> {
        let mut needs = ScratchNeeds::default();
        let widening = &self.layout.widening;
        if widening.is_empty() {
            return Ok(needs);
        }
        let mut operators = body.get_operators_reader()?;
        while !operators.eof() {
            let call = match operators.read()? {
                Operator::Call { function_index } => widening.direct_call(function_index),
                Operator::CallIndirect { type_index, .. } => widening.indirect_call(type_index),
                _ => None,
            };
            if let Some(call) = call {
                needs.add(&call);
            }
        }
        Ok(needs)
    }

    /// Defined function `index`, whose body is `body`, with its metering.
    fn rewrite_function(
        &mut self,
        index: usize,
        body: &wasmparser::FunctionBody<'_>,
    ) -> Result<Function, reencode::Error<String>> {
        let type_index = self.layout.function_types.get(index).copied();
        let (params, results) = type_index
            .and_then(|index| {
                let index = index as usize;
                Some((*self.layout.type_params.get(index)?, self.layout.type_results.get(index)?.clone()))
            })
            .ok_or_else(|| reencode::Error::UserError("a function body without a type".to_string()))?;
        let mut locals = Vec::new();
        let mut local_count = params;
        for pair in body.get_locals_reader()? {
            let (count, val_type) = pair?;
            local_count += count;
            locals.push((count, self.val_type(val_type)?));
        }
        locals.push((1, ValType::I64));
        locals.push((1, ValType::I32));
        let used = self.layout.used_global();
        let meter = Meter { used, limit: used + 1, exhausted: used + 2, fuel: local_count, length: local_count + 1 };
        // The widened parameters' stand-ins, then the calls' scratch locals
        // (`stack_args.rs`).
        let mut next_local = local_count + 2;
        let widened = type_index.map_or(&[][..], |index| self.layout.widening.widened_params(index));
        let param_locals: Vec<(u32, u32)> =
            widened.iter().zip(next_local..).map(|(param, local)| (*param, local)).collect();
        if !param_locals.is_empty() {
            locals.push((param_locals.len() as u32, ValType::I32));
            next_local += param_locals.len() as u32;
        }
        let scratch = self.scratch_needs(body)?.declare(next_local, &mut locals);
        // Each stretch is paid for as it starts, so the costs are found
        // first, in a pass of their own over the same operators.
        let stretch_costs = match self.metering {
            Metering::Fuel => stretch_costs(body)?,
            Metering::Deadline => Vec::new(),
        };
        let mut writer = Body {
            meter,
            metering: self.metering,
            function: Function::new(locals),
            labels: Vec::new(),
            stretch_costs: stretch_costs.into_iter(),
            shared_stop: results.len() <= 1,
            param_locals,
            scratch,
        };
        for (param, stand_in) in &writer.param_locals {
            writer
                .function
                .instruction(&Instruction::LocalGet(*param))
                .instruction(&Instruction::I32WrapI64)
                .instruction(&Instruction::LocalSet(*stand_in));
        }
        // The body goes in a block that returns what the function does,
        // inside a block whose end is the function's stop: a failed check
        // branches out of both.
        if writer.shared_stop {
            let returns = match results.first() {
                Some(result) => wasm_encoder::BlockType::Result(self.val_type(*result)?),
                None => wasm_encoder::BlockType::Empty,
            };
            writer.function.instruction(&Instruction::Block(wasm_encoder::BlockType::Empty));
            writer.function.instruction(&Instruction::Block(returns));
        }
        // Calls are looked at as they arrive: in the functions that make
        // calls, which every recursion passes through. A function that
        // makes none runs in a time bounded by its size, its loops aside,
        // which are looked at anyway; allocators and small helpers are most
        // of those, and their callers no longer look on their behalf.
        let looks_on_entry = makes_calls(body)?;
        let stop = writer.stop(Written::Once);
        match self.metering {
            Metering::Fuel => {
                // The caller wrote back what it used before the call.
                meter.load(&mut writer.function);
                if looks_on_entry {
                    meter.check_loop(&mut writer.function, stop);
                }
            }
            Metering::Deadline => {
                if looks_on_entry {
                    meter.check_deadline(&mut writer.function, stop);
                }
            }
        }
        writer.start_stretch();
        let mut pieces = Pieces::new(body)?;
        while let Some(piece) = pieces.next()? {
            match piece {
                Piece::Operator(operator) => {
                    if self.operator(&mut writer, operator, Written::Once)? {
                        writer.start_stretch();
                    }
                }
                Piece::Counted(counted, operators) => self.counted_loop(&mut writer, &counted, operators)?,
            }
        }
        if writer.shared_stop {
            // The body's own `end` closed its block: what it left on the
            // stack is returned, and the stop follows.
            writer.function.instruction(&Instruction::Return);
            writer.function.instruction(&Instruction::End);
            meter.stop(&mut writer.function, self.metering);
            writer.function.instruction(&Instruction::End);
        }
        Ok(writer.function)
    }
}

#[cfg(test)]
mod tests {
    use wasmer::{Instance, Module, Store, Value, imports};
    use wasmparser::{Parser, Payload};

    use super::{EXHAUSTED_EXPORT, LIMIT_EXPORT, USED_EXPORT, instrument};
    use crate::Metering;

    /// What running a test module's `run` came to.
    struct Ran {
        trapped: bool,
        exhausted: bool,
        used: i64,
        /// What `run` returned, if it returns an i32 and did not trap.
        returned: Option<i32>,
    }

    /// Instruments `wat`, instantiates it and runs its export `run` on a
    /// budget of `limit`.
    fn run_any(wat: &str, limit: i64) -> Ran {
        run_metered(wat, limit, Metering::Fuel)
    }

    /// As [`run_any`], under `metering`.
    fn run_metered(wat: &str, limit: i64, metering: Metering) -> Ran {
        let wasm = instrument(&wat::parse_str(wat).expect("the test module parses"), metering).expect("it instruments");
        let mut store = Store::new(crate::compiling_engine(crate::Limits::default()));
        let module = Module::new(&store, wasm).expect("the instrumented module compiles");
        let instance = Instance::new(&mut store, &module, &imports! {}).expect("it instantiates");
        let global = |name: &str| instance.exports.get_global(name).unwrap().clone();
        global(LIMIT_EXPORT).set(&mut store, Value::I64(limit)).unwrap();
        let results = instance.exports.get_function("run").unwrap().call(&mut store, &[]);
        let trapped = results.is_err();
        let returned = results.ok().and_then(|results| results.first().and_then(Value::i32));
        let exhausted = global(EXHAUSTED_EXPORT).get(&mut store) == Value::I32(1);
        let Value::I64(used) = global(USED_EXPORT).get(&mut store) else { panic!("used is an i64") };
        Ran { trapped, exhausted, used, returned }
    }

    /// As [`run_any`], for modules that trap for fuel or not at all:
    /// whether it ran out, and the fuel used.
    fn run(wat: &str, limit: i64) -> (bool, i64) {
        let ran = run_any(wat, limit);
        assert_eq!(ran.trapped, ran.exhausted, "a trap other than fuel");
        (ran.exhausted, ran.used)
    }

    fn runs_out_of_fuel(wat: &str) -> bool {
        run(wat, 1_000_000).0
    }

    #[test]
    fn loops_whose_only_way_back_is_a_branch_out_of_nested_blocks_run_out() {
        for body in [
            // `br` from one block down.
            "(loop $l (block $b (br $l)))",
            // `br_if` from two blocks down.
            "(loop $l (block (block (br_if $l (i32.const 1)))))",
            // `br_table` whose default goes back.
            "(loop $l (block $b (br_table $b $l (i32.const 5))))",
            // `br_table` with the way back among its targets.
            "(loop $l (block $b (br_table $l $b (i32.const 0))))",
            // Inside an `if`, with a forward branch before the way back.
            "(loop $l (if (i32.const 1) (then (block $b (br_if $b (i32.const 0)) (br $l)))))",
        ] {
            let wat = format!(r#"(module (func (export "run") {body}))"#);
            assert!(runs_out_of_fuel(&wat), "{body} ran to the end or trapped otherwise");
        }
    }

    #[test]
    fn under_the_deadline_loops_and_recursion_stop_once_the_limit_is_zero_and_not_before() {
        let endless = [
            "(loop $l (block $b (br $l)))",
            "(loop $l (block (block (br_if $l (i32.const 1)))))",
            "(loop $l (block $b (br_table $b $l (i32.const 5))))",
            "(loop $l (block $b (br_table $l $b (i32.const 0))))",
            "(loop $l (if (i32.const 1) (then (block $b (br_if $b (i32.const 0)) (br $l)))))",
        ];
        for body in endless {
            let wat = format!(r#"(module (func (export "run") {body}))"#);
            let ran = run_metered(&wat, 0, Metering::Deadline);
            assert!(ran.trapped && ran.exhausted, "{body} was not stopped");
        }
        let recursion = r#"(module (func $f (export "run") (call $f)))"#;
        let ran = run_metered(recursion, 0, Metering::Deadline);
        assert!(ran.trapped && ran.exhausted);
        // A thousand turns on a limit the watchdog has not touched run to
        // the end, and nothing is counted.
        let finite = r#"(module (func (export "run") (local $n i32)
            (loop $l
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $n) (i32.const 1000))))))"#;
        let ran = run_metered(finite, 1, Metering::Deadline);
        assert!(!ran.trapped && !ran.exhausted);
        assert_eq!(ran.used, 0);
    }

    /// A counted loop (see counted_loops.rs) of `turns` turns: `$i` counts
    /// down from `turns` by one to zero, three operators and the five of
    /// the condition a turn.
    fn countdown(start: &str, step: i32) -> String {
        format!(
            r#"(module (func (export "run") (result i32) (local $i i32) (local $sum i32)
                (local.set $i (i32.const {start}))
                (loop $l
                    (local.set $sum (i32.add (local.get $sum) (i32.const 1)))
                    (br_if $l (local.tee $i (i32.add (local.get $i) (i32.const {step})))))
                (local.get $sum)))"#
        )
    }

    #[test]
    fn a_counted_loop_pays_for_every_turn_whichever_copy_runs() {
        // `i32.const`, `local.set`, `loop`; per turn `local.get`,
        // `i32.const`, `i32.add`, `local.set`, then `local.get`,
        // `i32.const`, `i32.add`, `local.tee`, `br_if`; the loop's `end`,
        // `local.get`, the function's `end`.
        let expected = |turns: i64| 3 + turns * 9 + 3;
        // With plenty left, the copy that does not look at the budget;
        // with less left than a counted loop may run unchecked, the other.
        for limit in [10_000_000, 9_500] {
            let ran = run_any(&countdown("1000", -1), limit);
            assert!(!ran.trapped, "limit {limit}");
            assert_eq!((ran.used, ran.returned), (expected(1000), Some(1000)), "limit {limit}");
        }
        // A budget too small for the loop stops it within a turn of it,
        // as any loop.
        let ran = run_any(&countdown("1000", -1), 5_000);
        assert!(ran.trapped && ran.exhausted);
        assert!((5_000..5_000 + 10).contains(&ran.used), "{}", ran.used);
    }

    #[test]
    fn counted_loops_that_would_never_end_or_run_long_are_stopped() {
        for (start, step) in [
            // Past zero for ever: the distance is not a whole number of steps.
            ("3", -2),
            ("-7", 4),
            // From zero, a whole turn of the counter's range.
            ("0", -1),
            // Many turns.
            ("1000000000", -1),
        ] {
            let wat = countdown(start, step);
            let ran = run_any(&wat, 1_000_000);
            assert!(ran.trapped && ran.exhausted, "fuel: {start} by {step}");
            let ran = run_metered(&wat, 0, Metering::Deadline);
            assert!(ran.trapped && ran.exhausted, "deadline: {start} by {step}");
        }
    }

    #[test]
    fn under_the_deadline_a_counted_loop_of_few_turns_runs_without_a_look() {
        // On a limit of zero, a look anywhere in it would stop it.
        let ran = run_metered(&countdown("1000", -1), 0, Metering::Deadline);
        assert!(!ran.trapped, "the loop looked at the deadline");
        assert_eq!(ran.returned, Some(1000));
        // Counting up by 16 to a local, and to a constant first.
        let up = r#"(module (func (export "run") (result i32) (local $i i32) (local $end i32)
            (local.set $end (i32.const 1600))
            (loop $l (br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
            (local.get $i)))"#;
        assert_eq!(run_metered(up, 0, Metering::Deadline).returned, Some(1600));
        let constant_first = r#"(module (func (export "run") (result i32) (local $i i32)
            (local.set $i (i32.const -400))
            (loop $l (br_if $l (i32.ne (i32.const 0) (local.tee $i (i32.add (local.get $i) (i32.const 4))))))
            (local.get $i)))"#;
        assert_eq!(run_metered(constant_first, 0, Metering::Deadline).returned, Some(0));
    }

    #[test]
    fn branches_out_of_a_counted_loop_and_its_values_land_where_they_did() {
        // A `br_table` to a block inside the loop and to one outside: ten
        // turns from 16 down, the last leaving before it counts (nine).
        let table = r#"(module (func (export "run") (result i32) (local $i i32) (local $count i32)
            (local.set $i (i32.const 16))
            (block $done
                (loop $l
                    (block $inner (br_table $inner $done $inner (i32.sub (local.get $i) (i32.const 6))))
                    (local.set $count (i32.add (local.get $count) (i32.const 1)))
                    (br_if $l (local.tee $i (i32.add (local.get $i) (i32.const -1))))))
            (i32.add (local.get $count) (i32.const 1000))))"#;
        // A loop taking and giving a value, left by a `br_if` with it: six
        // turns of adding 3.
        let valued = r#"(module (func (export "run") (result i32) (local $i i32)
            (local.set $i (i32.const 8))
            (block $out (result i32)
                (i32.const 0)
                (loop $l (param i32) (result i32)
                    (i32.add (i32.const 3))
                    (br_if $out (i32.eq (local.get $i) (i32.const 3)))
                    (br_if $l (local.tee $i (i32.add (local.get $i) (i32.const -1))))))))"#;
        for (wat, expected) in [(table, 1009), (valued, 18)] {
            // The unchecked copy, the checked one, and the deadline's.
            for (limit, metering) in [(10_000_000, Metering::Fuel), (1_000, Metering::Fuel), (1, Metering::Deadline)] {
                let ran = run_metered(wat, limit, metering);
                assert!(!ran.trapped, "{metering:?} on {limit}");
                assert_eq!(ran.returned, Some(expected), "{metering:?} on {limit}");
            }
        }
    }

    #[test]
    fn a_large_module_is_rewritten_on_several_threads_as_on_one() {
        let wasm = dev_support::wasm("regex-scrubbing");
        let bodies: usize = Parser::new(0)
            .parse_all(&wasm)
            .filter_map(|payload| match payload.unwrap() {
                Payload::CodeSectionStart { size, .. } => Some(size as usize),
                _ => None,
            })
            .sum();
        assert!(bodies > super::PARALLEL_REWRITE_BYTES, "the module is too small to be split ({bodies} bytes)");
        for metering in [Metering::Fuel, Metering::Deadline] {
            let alone = super::instrument_on(&wasm, metering, 1).unwrap();
            for threads in [2, 3, 7] {
                assert!(super::instrument_on(&wasm, metering, threads).unwrap() == alone, "{threads} threads differ");
            }
        }
    }

    #[test]
    fn recursion_through_other_functions_and_tables_is_stopped() {
        // `run` calls `$a`, which calls `$b` through the table, which calls
        // `$a`: the look happens in the callees, as they are entered.
        let wat = r#"(module
            (type $void (func))
            (table 1 funcref)
            (elem (i32.const 0) $b)
            (func $a (call_indirect (type $void) (i32.const 0)))
            (func $b (call $a))
            (func (export "run") (call $a)))"#;
        let ran = run_metered(wat, 0, Metering::Deadline);
        assert!(ran.trapped && ran.exhausted, "the deadline did not stop it");
        assert!(run(wat, 1000).0, "the fuel did not stop it");
    }

    #[test]
    fn functions_that_return_several_values_are_stopped_and_return_them() {
        // A function of two results has no block to hold its body, and
        // stops where it looks instead.
        let endless = r#"(module
            (func $pair (result i32 i32) (loop $l (br $l)) (i32.const 1) (i32.const 2))
            (func (export "run") (result i32) (call $pair) (i32.add)))"#;
        let ran = run_metered(endless, 0, Metering::Deadline);
        assert!(ran.trapped && ran.exhausted);
        assert!(runs_out_of_fuel(endless));
        let finite = r#"(module
            (func $pair (param $n i32) (result i32 i32)
                (loop $l (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
                (i32.const 40) (i32.const 2))
            (func (export "run") (result i32) (call $pair (i32.const 10)) (i32.add)))"#;
        for metering in [Metering::Deadline, Metering::Fuel] {
            let ran = run_metered(finite, 1_000_000, metering);
            assert_eq!(ran.returned, Some(42));
            assert!(!ran.trapped);
        }
    }

    #[test]
    fn recursion_runs_out() {
        // Each turn is a call: no branch at all. (A budget smaller than
        // the stack is deep, or the stack runs out first.)
        let wat = r#"(module (func $f (export "run") (call $f)))"#;
        assert!(run(wat, 1000).0);
    }

    #[test]
    fn forward_branches_run_to_the_end() {
        let wat = r#"(module (func (export "run")
            (block $b (br_if $b (i32.const 1)))
            (block $c (br_table $c $c (i32.const 0)))
            (if (i32.const 1) (then (return)))))"#;
        assert!(!runs_out_of_fuel(wat));
    }

    #[test]
    fn the_fuel_used_counts_every_operator_run_in_callees_too() {
        // `run`: `call`, `call`, `end`; `$f`: `nop`, `nop`, `end`, twice.
        let wat = r#"(module (func $f nop nop) (func (export "run") (call $f) (call $f)))"#;
        assert_eq!(run(wat, 1_000_000), (false, 3 + 2 * 3));
        // A loop of three turns: `i32.const`... counted per turn, and the
        // `end`s after it once.
        let wat = r#"(module (func (export "run") (local $n i32)
            (loop $l
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $n) (i32.const 3))))))"#;
        // Per turn: local.get, i32.const, i32.add, local.set, local.get,
        // i32.const, i32.lt_u, br_if = 8; `loop` once, the two `end`s once.
        assert_eq!(run(wat, 1_000_000), (false, 1 + 3 * 8 + 2));
    }

    #[test]
    fn a_forward_branch_pays_for_the_straight_line_code_it_skips() {
        // Three turns of: `block`, `i32.const`, `br_if`, four `nop`s and
        // the block's `end` (8, paid as the turn starts, whether the
        // branch skips the `nop`s or not), then the 8 operators up to the
        // branch back; `loop` once, the two `end`s once.
        for skips in [1, 0] {
            let wat = format!(
                r#"(module (func (export "run") (local $n i32)
                (loop $l
                    (block $skip (br_if $skip (i32.const {skips})) nop nop nop nop)
                    (local.set $n (i32.add (local.get $n) (i32.const 1)))
                    (br_if $l (i32.lt_u (local.get $n) (i32.const 3))))))"#
            );
            assert_eq!(run(&wat, 1_000_000), (false, 1 + 3 * (8 + 8) + 2), "skips: {skips}");
        }
    }

    #[test]
    fn code_after_a_block_if_or_loop_is_paid_with_the_stretch_before_them() {
        // `block`, `block`, `i32.const`, `br_if` out of both, the inner
        // `end`, three `nop`s, the outer `end` and the function's: one
        // stretch of 10, all paid though the branch skips the `nop`s.
        let wat = r#"(module (func (export "run")
            (block $outer (block $inner (br_if $outer (i32.const 1))) nop nop nop)))"#;
        assert_eq!(run(wat, 1_000_000), (false, 10));
        // `i32.const`, `if`, the `nop` after it and the function's `end`
        // (4), and the arm taken: `nop` and `else` (2), or three `nop`s
        // and `end` (4).
        for (condition, expected) in [(1, 4 + 2), (0, 4 + 4)] {
            let wat = format!(
                r#"(module (func (export "run")
                (if (i32.const {condition}) (then nop) (else nop nop nop)) nop))"#
            );
            assert_eq!(run(&wat, 1_000_000), (false, expected), "condition {condition}");
        }
    }

    #[test]
    fn a_branch_out_of_the_function_leaves_the_fuel_used_known() {
        // `nop`, `nop`, `br` (to the function's own label): 3.
        let wat = r#"(module (func (export "run") nop nop (br 0)))"#;
        assert_eq!(run(wat, 1_000_000), (false, 3));
    }

    #[test]
    fn what_a_loop_spent_is_known_when_the_module_then_traps_otherwise() {
        // A thousand turns, then a trap that is not the fuel's: the engine
        // charges what the call spent to the batch's budget, so the turns
        // must be in `used`.
        let wat = r#"(module (func (export "run") (local $n i32)
            (loop $l
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $n) (i32.const 1000))))
            unreachable))"#;
        let ran = run_any(wat, 1_000_000);
        assert!(ran.trapped && !ran.exhausted);
        assert!(ran.used >= 1000 * 8, "{}", ran.used);
    }

    #[test]
    fn the_budget_is_the_limit_set_before_the_call() {
        let wat = r#"(module (func (export "run") (local $n i32)
            (loop $l
                (local.set $n (i32.add (local.get $n) (i32.const 1)))
                (br_if $l (i32.lt_u (local.get $n) (i32.const 1000))))))"#;
        let (exhausted, used) = run(wat, 1000);
        assert!(exhausted);
        // Stopped at the first check past the limit: within one turn.
        assert!((1000..1000 + 9).contains(&used), "{used}");
        assert!(!run(wat, 100_000).0);
    }

    #[test]
    fn bulk_operations_pay_for_their_length() {
        let wat = r#"(module (memory 2) (func (export "run")
            (memory.fill (i32.const 0) (i32.const 0) (i32.const 65536))))"#;
        // Four operators and the `end`, and 65536 / 8 for the bytes.
        assert_eq!(run(wat, 1_000_000), (false, 5 + 65536 / 8));
        assert!(run(wat, 1000).0);
    }

    #[test]
    fn a_module_cannot_pass_its_own_globals_off_as_the_fuel() {
        // Were its own global the one the host sets, the loop would never
        // run out.
        let wat = r#"(module
            (global $fake (mut i64) (i64.const 9223372036854775807))
            (export "fluvio_fuel_limit" (global $fake))
            (func (export "run") (loop $l (br $l))))"#;
        assert!(runs_out_of_fuel(wat));
    }

    #[test]
    fn modules_without_globals_or_exports_get_the_fuel_globals() {
        let wasm = instrument(&wat::parse_str("(module (func nop))").unwrap(), Metering::Fuel).unwrap();
        let store = Store::new(crate::compiling_engine(crate::Limits::default()));
        let module = Module::new(&store, wasm).unwrap();
        let exports: Vec<String> = module.exports().map(|export| export.name().to_string()).collect();
        assert_eq!(exports, [USED_EXPORT, LIMIT_EXPORT, EXHAUSTED_EXPORT]);
    }

    #[test]
    fn custom_sections_are_kept_as_they_are_even_unreadable_names() {
        let mut wasm = wat::parse_str(r#"(module (func (export "run") nop))"#).unwrap();
        // A `name` section whose content is not a name section.
        wasm.extend_from_slice(&[0, 7, 4, b'n', b'a', b'm', b'e', 0xff, 0xff]);
        wasm.extend_from_slice(&[0, 6, 3, b'a', b'b', b'c', 1, 2]);
        let instrumented = instrument(&wasm, Metering::Fuel).expect("custom sections are no reason to refuse a module");
        assert!(
            instrumented.ends_with(&[0, 7, 4, b'n', b'a', b'm', b'e', 0xff, 0xff, 0, 6, 3, b'a', b'b', b'c', 1, 2])
        );
        Module::new(&Store::new(crate::compiling_engine(crate::Limits::default())), instrumented).unwrap();
    }

    /// The parameters of each function type of `wasm`'s functions, in
    /// function order (defined functions only).
    fn function_params(wasm: &[u8]) -> Vec<Vec<wasmparser::ValType>> {
        let mut types = Vec::new();
        let mut functions = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.unwrap() {
                Payload::TypeSection(reader) => {
                    for ty in reader.into_iter_err_on_gc_types() {
                        types.push(ty.unwrap().params().to_vec());
                    }
                }
                Payload::FunctionSection(reader) => functions.extend(reader.into_iter().map(Result::unwrap)),
                _ => {}
            }
        }
        functions.iter().map(|ty| types[*ty as usize].clone()).collect()
    }

    /// Functions with `i32` parameters past the fifth integer one, called
    /// directly and through a table, with negative arguments, a float among
    /// them, and the widened parameter written and ending a counted loop.
    const STACK_ARGUMENTS: &str = r#"(module
        (type $six (func (param i32 i32 i32 i32 i32 i32) (result i32)))
        (table 1 funcref)
        (elem (i32.const 0) $pick)
        (func $pick (type $six)
            (local.set 5 (i32.add (local.get 5) (i32.const 1)))
            (i32.sub (local.get 5) (local.get 0)))
        (func $mixed (param i32 i32 i32 i32 i32 f64 i32 i32) (result i32)
            (i32.add (i32.mul (local.get 6) (local.get 7)) (i32.trunc_f64_s (local.get 5))))
        (func $count_to (type $six)
            (loop $l
                (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                (br_if $l (i32.ne (local.get 0) (local.get 5))))
            (local.get 0))
        (func (export "run") (result i32)
            (call $pick (i32.const 1) (i32.const 2) (i32.const 3) (i32.const 4) (i32.const 5) (i32.const -7))
            (call_indirect (type $six) (i32.const 10) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                (i32.const 100) (i32.const 0))
            i32.add
            (call $mixed (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (f64.const 2.5)
                (i32.const 3) (i32.const -4))
            i32.add
            (call $count_to (i32.const -3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000))
            i32.add))"#;

    #[test]
    fn i32_arguments_on_the_machine_stack_are_widened_and_keep_their_values() {
        use wasmparser::ValType::{F64, I32, I64};
        let wasm = wat::parse_str(STACK_ARGUMENTS).unwrap();
        for metering in [Metering::Fuel, Metering::Deadline] {
            let instrumented = instrument(&wasm, metering).unwrap();
            let params = function_params(&instrumented);
            assert_eq!(params[0], [I32, I32, I32, I32, I32, I64]);
            assert_eq!(params[1], [I32, I32, I32, I32, I32, F64, I64, I64]);
            assert_eq!(params[2], params[0], "one signature, one widened type");
            // (-7 + 1) - 1, (100 + 1) - 10, 3 * -4 + 2, and 1000.
            let ran = run_metered(STACK_ARGUMENTS, if metering == Metering::Fuel { 1_000_000 } else { 1 }, metering);
            assert_eq!(ran.returned, Some(-7 + 91 - 10 + 1000), "{metering:?}");
        }
    }

    #[test]
    fn a_signature_an_export_shares_is_not_widened() {
        let wat = STACK_ARGUMENTS.replace("(func $pick (type $six)", r#"(func $pick (export "pick") (type $six)"#);
        let instrumented = instrument(&wat::parse_str(&wat).unwrap(), Metering::Fuel).unwrap();
        let params = function_params(&instrumented);
        assert_eq!(params[0], [wasmparser::ValType::I32; 6]);
        assert_eq!(params[2], [wasmparser::ValType::I32; 6], "the same signature, not exported, stays too");
        assert_eq!(params[1][7], wasmparser::ValType::I64, "another signature is still widened");
        assert_eq!(run_metered(&wat, 1_000_000, Metering::Fuel).returned, Some(-7 + 91 - 10 + 1000));
        // Widened or not, the module pays the same fuel: the extends and
        // wraps the rewrite adds are not the module's operators.
        let nothing_widened = wat.replace("(func $mixed", r#"(func $mixed (export "mixed")"#);
        assert!(
            function_params(&instrument(&wat::parse_str(&nothing_widened).unwrap(), Metering::Fuel).unwrap())
                .iter()
                .flatten()
                .all(|param| *param != wasmparser::ValType::I64)
        );
        let used = |wat: &str| run_metered(wat, 1_000_000, Metering::Fuel).used;
        assert_eq!(used(STACK_ARGUMENTS), used(&nothing_widened));
        assert_eq!(used(&wat), used(&nothing_widened));
    }

    #[test]
    fn invalid_modules_and_unsupported_proposals_are_refused() {
        assert!(instrument(b"\0asm\x01\0\0\0\x0a\x01", Metering::Fuel).is_err());
        // Exceptions are not among a SmartModule's proposals.
        let throwing = wat::parse_str(r#"(module (tag $t) (func (export "run") (throw $t)))"#).unwrap();
        let error = instrument(&throwing, Metering::Fuel).unwrap_err();
        assert!(error.contains("exceptions"), "{error}");
    }
}
