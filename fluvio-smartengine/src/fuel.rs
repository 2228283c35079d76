//! The CPU cap: a compiler middleware that makes every module pay fuel for
//! what it runs, and traps it when the fuel is gone.
//!
//! Straight-line code pays one unit per operator, settled at the end of each
//! basic block (wasm's branches, calls and block ends), so a loop pays on
//! every turn. The used fuel is compared with the limit only where control
//! may turn back or go elsewhere (branches and calls): every endless run
//! passes one of them, and a hot loop pays one comparison a turn instead of
//! one per block of its body. Bulk operations (`memory.fill`, `memory.copy`,
//! `memory.init`, and the table equivalents) do work in proportion to a
//! length known only at run time; priced as one operator, a loop of 256 MiB
//! fills would run for hours on a budget meant for seconds. They also pay
//! one unit per 2^[`BYTES_PER_FUEL_SHIFT`] bytes (or table entries) of that length,
//! charged before they run.
//!
//! The middleware adds four globals the guest's own code cannot name (its
//! global indexes were fixed before they were appended): the fuel used, the
//! limit it may reach, a flag set when the module ran out, and a scratch
//! slot for the length of a bulk operation. The guest adds to `used` and
//! compares it with `limit`, which it only ever reads: so another thread
//! can stop a running module by lowering `limit` (see `watchdog.rs`). A
//! single "remaining" counter would not do: the guest's read-modify-write of
//! it, in flight in the store buffer of a tight loop, overwrites a store
//! from another thread nearly every time.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, Mutability, Type};
use wasmer_types::{GlobalIndex, ModuleInfo};

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

#[derive(Clone, Copy)]
struct FuelGlobals {
    used: u32,
    limit: u32,
    exhausted: u32,
    bulk_length: u32,
}

/// The module middleware. One instance instruments one module: the global
/// indexes it appends are those of that module.
#[derive(Default)]
pub(crate) struct FuelMeter {
    globals: Mutex<Option<FuelGlobals>>,
}

impl std::fmt::Debug for FuelMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuelMeter").finish_non_exhaustive()
    }
}

impl ModuleMiddleware for FuelMeter {
    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals = self.globals.lock().expect("fuel globals").expect("transform_module_info runs first");
        Box::new(FunctionFuel { globals, block_cost: 0 })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut slot = self.globals.lock().expect("fuel globals");
        if slot.is_some() {
            return Err(MiddlewareError::new("FuelMeter", "one FuelMeter instruments one module"));
        }
        let mut add = |ty: Type, init: GlobalInit, export: Option<&str>| -> GlobalIndex {
            let index = info.globals.push(GlobalType::new(ty, Mutability::Var));
            info.global_initializers.push(init);
            if let Some(name) = export {
                info.exports.insert(name.to_string(), ExportIndex::Global(index));
            }
            index
        };
        // A limit of zero until the host sets a budget before each call.
        let used = add(Type::I64, GlobalInit::I64Const(0), Some(USED_EXPORT));
        let limit = add(Type::I64, GlobalInit::I64Const(0), Some(LIMIT_EXPORT));
        let exhausted = add(Type::I32, GlobalInit::I32Const(0), Some(EXHAUSTED_EXPORT));
        let bulk_length = add(Type::I32, GlobalInit::I32Const(0), None);
        *slot = Some(FuelGlobals {
            used: used.as_u32(),
            limit: limit.as_u32(),
            exhausted: exhausted.as_u32(),
            bulk_length: bulk_length.as_u32(),
        });
        Ok(())
    }
}

struct FunctionFuel {
    globals: FuelGlobals,
    /// Cost of the operators since the last settlement.
    block_cost: u64,
}

impl std::fmt::Debug for FunctionFuel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionFuel").field("block_cost", &self.block_cost).finish()
    }
}

/// Operators that end a basic block or start one: where the cost of the
/// block so far is settled, so that no path reaches a branch target or
/// leaves the function without having paid.
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
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::Catch { .. }
            | Operator::TryTable { .. }
    )
}

/// Bulk operations whose last operand (on top of the stack) is an i32
/// count of bytes or table entries. With memory64 and table64 turned off
/// (see the engine's features), the count is always an i32.
fn is_bulk(operator: &Operator) -> bool {
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

/// Block ends where control only falls through or leaves the function:
/// no path turns back from them, so the fuel they settle is checked against
/// the limit at the next branch or call instead. Every way to run without
/// end (a loop's back edge is a branch; recursion is a call) passes a
/// check, and a straight run of code between checks is bounded by the
/// function's size.
fn falls_through(operator: &Operator) -> bool {
    matches!(operator, Operator::End | Operator::If { .. } | Operator::Else | Operator::Loop { .. } | Operator::Return)
}

impl FunctionFuel {
    /// `used += cost`, where `cost` is pushed by `push_cost`, without the
    /// check (see [`falls_through`]).
    fn settle<'a>(&self, state: &mut MiddlewareReaderState<'a>, push_cost: &[Operator<'a>]) {
        let used = self.globals.used;
        state.push_operator(Operator::GlobalGet { global_index: used });
        state.extend(push_cost);
        state.extend(&[Operator::I64Add, Operator::GlobalSet { global_index: used }]);
    }

    /// `used += cost; if used > limit { exhausted = 1; trap }`, where
    /// `cost` is pushed by `push_cost`. Neither can overflow: costs are
    /// below 2^32 a settlement and the host keeps limits below 2^62.
    fn charge<'a>(&self, state: &mut MiddlewareReaderState<'a>, push_cost: &[Operator<'a>]) {
        let FuelGlobals { used, limit, exhausted, .. } = self.globals;
        state.push_operator(Operator::GlobalGet { global_index: used });
        state.extend(push_cost);
        state.extend(&[
            Operator::I64Add,
            Operator::GlobalSet { global_index: used },
            Operator::GlobalGet { global_index: used },
            Operator::GlobalGet { global_index: limit },
            Operator::I64GtS,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: 1 },
            Operator::GlobalSet { global_index: exhausted },
            Operator::Unreachable,
            Operator::End,
        ]);
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionFuel {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        // Counted before settling, so a call pays for itself before control
        // leaves this block.
        self.block_cost += 1;
        if is_bulk(&operator) {
            // Settle the block, then the length: the length is the top
            // operand, so it is parked in the scratch global and pushed back.
            let bulk_length = self.globals.bulk_length;
            let cost = std::mem::take(&mut self.block_cost) as i64;
            self.charge(state, &[Operator::I64Const { value: cost }]);
            state.extend(&[
                Operator::GlobalSet { global_index: bulk_length },
                Operator::GlobalGet { global_index: bulk_length },
            ]);
            self.charge(
                state,
                &[
                    Operator::GlobalGet { global_index: bulk_length },
                    Operator::I64ExtendI32U,
                    Operator::I64Const { value: BYTES_PER_FUEL_SHIFT },
                    Operator::I64ShrU,
                ],
            );
        } else if ends_block(&operator) && self.block_cost > 0 {
            let cost = std::mem::take(&mut self.block_cost) as i64;
            if falls_through(&operator) {
                self.settle(state, &[Operator::I64Const { value: cost }]);
            } else {
                self.charge(state, &[Operator::I64Const { value: cost }]);
            }
        }
        state.push_operator(operator);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wasmer::{Instance, Module, Store, Value, imports};

    use super::{EXHAUSTED_EXPORT, LIMIT_EXPORT};

    /// Runs the export `run` of `wat`, compiled with the fuel middleware,
    /// on a budget of a million units: `true` when it ran out of fuel.
    fn runs_out_of_fuel(wat: &str) -> bool {
        let mut store = Store::new(crate::compiling_engine(crate::Limits::default()));
        let module = Module::new(&store, wat).expect("the test module compiles");
        let instance = Instance::new(&mut store, &module, &imports! {}).expect("it instantiates");
        let limit = instance.exports.get_global(LIMIT_EXPORT).unwrap();
        limit.set(&mut store, Value::I64(1_000_000)).unwrap();
        let run = instance.exports.get_function("run").unwrap();
        let result = run.call(&mut store, &[]);
        let exhausted = instance.exports.get_global(EXHAUSTED_EXPORT).unwrap().get(&mut store);
        assert_eq!(result.is_err(), exhausted == Value::I32(1), "a trap other than fuel: {result:?}");
        exhausted == Value::I32(1)
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
    fn forward_branches_run_to_the_end() {
        let wat = r#"(module (func (export "run")
            (block $b (br_if $b (i32.const 1)))
            (block $c (br_table $c $c (i32.const 0)))
            (if (i32.const 1) (then (return)))))"#;
        assert!(!runs_out_of_fuel(wat));
    }
}
