//! Wider stack arguments, so that a call's arguments on the machine stack
//! are read as they were written.
//!
//! A function's first five integer parameters travel in registers (after
//! the instance pointer, on x86-64); the sixth and later go on the machine
//! stack. There the compiler writes an `i32` argument with a 4-byte store,
//! and the callee reads its slot with an 8-byte load. A load wider than the
//! store it reads cannot take its value from the store buffer: it waits
//! until the store has reached the cache, a store-forwarding stall, on
//! every call. The regex scrubber's prefilter (`Memchr::find`: six
//! parameters, called through a trait object) spent half its time on that
//! one load, 6% of the module's.
//!
//! So the rewrite turns those `i32` parameters into `i64` ones: a caller
//! zero-extends the argument, and the callee wraps it into a local of its
//! own as it starts, which every use of the parameter reads instead. Both
//! ends of the slot are then eight bytes wide. Fuel is not charged for
//! either, so a module uses the same fuel as before.
//!
//! A signature is widened only where every function that can be called
//! with it is the module's own: no function of the same signature is
//! imported or exported (the host calls those with the signature it
//! knows), and no table is imported (the host could put its own functions
//! in it). An indirect call matches signatures by structure, so every type
//! index of one signature changes together: into a new type appended to the
//! type section, which the module's functions of that signature and its
//! indirect calls with it then name. A block typed by a type index keeps
//! the original, whose parameters are the block's stack and not arguments.

use std::collections::{HashMap, HashSet};

use wasm_encoder::{Function, Instruction};
use wasmparser::ValType;

/// Integer parameters a call passes in registers: on x86-64, six argument
/// registers less the one that carries the instance. Elsewhere the
/// widening costs an extend and a wrap, and changes nothing else.
const INTEGER_REGISTER_PARAMS: usize = 5;

/// The signatures a module's rewrite widens, and what their calls need.
#[derive(Clone, Default)]
pub(crate) struct Widening {
    /// For each type index of the module: its signature's widening, if it
    /// has one.
    by_type: Vec<Option<usize>>,
    /// The widened signatures.
    signatures: Vec<Widened>,
    /// The type index of each function, imported ones first.
    function_types: Vec<u32>,
}

/// One widened signature.
#[derive(Clone)]
struct Widened {
    /// The type index the widened functions and calls name: a new type,
    /// after the module's own.
    new_type: u32,
    /// The original parameters.
    params: Vec<ValType>,
    /// The new parameters: `i64` where [`Widened::positions`] says.
    new_params: Vec<ValType>,
    results: Vec<ValType>,
    /// The parameters widened, in increasing order.
    positions: Vec<u32>,
}

/// What [`Widening::plan`] needs to know of a module.
#[derive(Default, Clone)]
pub(crate) struct Signatures {
    /// For each type index, its parameters and results (`None` for a type
    /// that is not a function's).
    pub types: Vec<Option<(Vec<ValType>, Vec<ValType>)>>,
    /// The type index of each imported function, in order.
    pub imported_functions: Vec<u32>,
    /// The type index of each defined function, in order.
    pub defined_functions: Vec<u32>,
    /// The indexes of the functions the module exports.
    pub exported_functions: Vec<u32>,
    /// Whether the module imports a table.
    pub imports_table: bool,
}

/// The parameters of `params` that go on the machine stack as `i32`s.
fn stack_i32_positions(params: &[ValType]) -> Vec<u32> {
    let mut integers = 0;
    let mut positions = Vec::new();
    for (position, param) in params.iter().enumerate() {
        if matches!(param, ValType::I32 | ValType::I64) {
            if *param == ValType::I32 && integers >= INTEGER_REGISTER_PARAMS {
                positions.push(position as u32);
            }
            integers += 1;
        }
    }
    positions
}

impl Widening {
    /// Which signatures of a module to widen (see the module's doc).
    pub(crate) fn plan(module: &Signatures) -> Widening {
        let mut function_types = module.imported_functions.clone();
        function_types.extend(&module.defined_functions);
        let mut widening = Widening { by_type: vec![None; module.types.len()], signatures: Vec::new(), function_types };
        if module.imports_table {
            return widening;
        }
        let signature = |type_index: u32| module.types.get(type_index as usize).and_then(Option::as_ref);
        let fixed: HashSet<&(Vec<ValType>, Vec<ValType>)> = module
            .imported_functions
            .iter()
            .copied()
            .chain(
                module
                    .exported_functions
                    .iter()
                    .filter_map(|function| widening.function_types.get(*function as usize).copied()),
            )
            .filter_map(signature)
            .collect();
        let mut by_signature: HashMap<&(Vec<ValType>, Vec<ValType>), usize> = HashMap::new();
        let first_new_type = module.types.len() as u32;
        for (type_index, ty) in module.types.iter().enumerate() {
            let Some(ty) = ty else { continue };
            let positions = stack_i32_positions(&ty.0);
            // Arguments are moved through locals of their own types: only
            // numbers, never references, sit above a widened one.
            let numeric = ty.0[positions.first().copied().unwrap_or(0) as usize..].iter().all(|param| {
                matches!(param, ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 | ValType::V128)
            });
            if positions.is_empty() || !numeric || fixed.contains(ty) {
                continue;
            }
            let signatures = &mut widening.signatures;
            let index = *by_signature.entry(ty).or_insert_with(|| {
                let mut new_params = ty.0.clone();
                for position in &positions {
                    new_params[*position as usize] = ValType::I64;
                }
                signatures.push(Widened {
                    new_type: first_new_type + signatures.len() as u32,
                    params: ty.0.clone(),
                    new_params,
                    results: ty.1.clone(),
                    positions,
                });
                signatures.len() - 1
            });
            widening.by_type[type_index] = Some(index);
        }
        widening
    }

    /// The types to append to the type section, in order: parameters and
    /// results.
    pub(crate) fn new_types(&self) -> impl Iterator<Item = (&[ValType], &[ValType])> {
        self.signatures.iter().map(|widened| (widened.new_params.as_slice(), widened.results.as_slice()))
    }

    /// The type a function declared with `type_index` gets.
    pub(crate) fn function_type(&self, type_index: u32) -> u32 {
        self.widened(type_index).map_or(type_index, |widened| widened.new_type)
    }

    fn widened(&self, type_index: u32) -> Option<&Widened> {
        let index = (*self.by_type.get(type_index as usize)?)?;
        self.signatures.get(index)
    }

    /// The parameters widened of a function declared with `type_index`.
    pub(crate) fn widened_params(&self, type_index: u32) -> &[u32] {
        self.widened(type_index).map_or(&[], |widened| &widened.positions)
    }

    /// What a call to `function` must widen, if anything.
    pub(crate) fn direct_call(&self, function: u32) -> Option<CallSite<'_>> {
        let type_index = *self.function_types.get(function as usize)?;
        self.widened(type_index).map(|widened| CallSite { widened, indirect: false })
    }

    /// What an indirect call with `type_index` must widen, if anything.
    pub(crate) fn indirect_call(&self, type_index: u32) -> Option<CallSite<'_>> {
        self.widened(type_index).map(|widened| CallSite { widened, indirect: true })
    }

    /// Whether the module has nothing to widen.
    pub(crate) fn is_empty(&self) -> bool {
        self.signatures.is_empty()
    }
}

/// A call whose arguments must be widened before it.
pub(crate) struct CallSite<'w> {
    widened: &'w Widened,
    /// An indirect call, whose table index is on top of the arguments.
    indirect: bool,
}

impl CallSite<'_> {
    /// The type index an indirect call names instead.
    pub(crate) fn new_type(&self) -> u32 {
        self.widened.new_type
    }

    /// The arguments taken off the stack to reach the widened ones, from
    /// the lowest widened one up, and the table index of an indirect call:
    /// what the call needs of each type of scratch local.
    fn moved(&self) -> impl Iterator<Item = ValType> + '_ {
        let lowest = self.widened.positions[0] as usize;
        let only_top = !self.indirect && lowest + 1 == self.widened.params.len();
        let arguments = if only_top { &[][..] } else { &self.widened.params[lowest..] };
        arguments.iter().copied().chain(self.indirect.then_some(ValType::I32))
    }

    /// Writes the widening of the arguments on the stack, leaving them (and
    /// an indirect call's table index) where they were.
    pub(crate) fn widen(&self, function: &mut Function, scratch: &ScratchLocals) {
        let widened = self.widened;
        let lowest = widened.positions[0] as usize;
        if !self.indirect && lowest + 1 == widened.params.len() {
            // The one widened argument is on top.
            function.instruction(&Instruction::I64ExtendI32U);
            return;
        }
        let mut taken = [0u32; SCRATCH_TYPES];
        let mut take = |ty: ValType| {
            let slot = scratch_slot(ty);
            let local = scratch.first[slot] + taken[slot];
            taken[slot] += 1;
            local
        };
        let table_index = self.indirect.then(|| take(ValType::I32));
        if let Some(local) = table_index {
            function.instruction(&Instruction::LocalSet(local));
        }
        let locals: Vec<u32> = widened.params[lowest..].iter().map(|ty| take(*ty)).collect();
        for local in locals.iter().rev() {
            function.instruction(&Instruction::LocalSet(*local));
        }
        for (position, local) in (lowest..).zip(&locals) {
            function.instruction(&Instruction::LocalGet(*local));
            if widened.positions.contains(&(position as u32)) {
                function.instruction(&Instruction::I64ExtendI32U);
            }
        }
        if let Some(local) = table_index {
            function.instruction(&Instruction::LocalGet(local));
        }
    }
}

/// Kinds of scratch local: i32, i64, f32, f64, v128.
const SCRATCH_TYPES: usize = 5;

fn scratch_slot(ty: ValType) -> usize {
    match ty {
        ValType::I32 => 0,
        ValType::I64 => 1,
        ValType::F32 => 2,
        ValType::F64 => 3,
        _ => 4,
    }
}

/// The scratch locals of one function body: the first of each type, as
/// many of each as its most demanding call moves.
#[derive(Clone, Copy, Default)]
pub(crate) struct ScratchLocals {
    first: [u32; SCRATCH_TYPES],
}

/// How many scratch locals of each type the calls of a body need.
#[derive(Clone, Copy, Default)]
pub(crate) struct ScratchNeeds {
    counts: [u32; SCRATCH_TYPES],
}

impl ScratchNeeds {
    /// Counts what `call` moves.
    pub(crate) fn add(&mut self, call: &CallSite<'_>) {
        let mut counts = [0u32; SCRATCH_TYPES];
        for ty in call.moved() {
            counts[scratch_slot(ty)] += 1;
        }
        for (most, count) in self.counts.iter_mut().zip(counts) {
            *most = (*most).max(count);
        }
    }

    /// Declares the scratch locals, the first at local `next`, as groups
    /// for a function's locals; returns where each type's start.
    pub(crate) fn declare(&self, next: u32, locals: &mut Vec<(u32, wasm_encoder::ValType)>) -> ScratchLocals {
        const TYPES: [wasm_encoder::ValType; SCRATCH_TYPES] = [
            wasm_encoder::ValType::I32,
            wasm_encoder::ValType::I64,
            wasm_encoder::ValType::F32,
            wasm_encoder::ValType::F64,
            wasm_encoder::ValType::V128,
        ];
        let mut scratch = ScratchLocals::default();
        let mut next = next;
        for (slot, (count, ty)) in self.counts.iter().zip(TYPES).enumerate() {
            scratch.first[slot] = next;
            if *count > 0 {
                locals.push((*count, ty));
                next += count;
            }
        }
        scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signatures(types: Vec<Vec<ValType>>, exported: Vec<u32>, imported: Vec<u32>) -> Signatures {
        let defined = (0..types.len() as u32).collect();
        Signatures {
            types: types.into_iter().map(|params| Some((params, vec![ValType::I32]))).collect(),
            imported_functions: imported,
            defined_functions: defined,
            exported_functions: exported,
            imports_table: false,
        }
    }

    #[test]
    fn only_i32_parameters_past_the_fifth_integer_one_are_widened() {
        use ValType::*;
        assert_eq!(stack_i32_positions(&[I32; 5]), Vec::<u32>::new());
        assert_eq!(stack_i32_positions(&[I32; 7]), vec![5, 6]);
        // Floats travel in registers of their own and do not count.
        assert_eq!(stack_i32_positions(&[F64, I32, I32, F32, I32, I32, I32, I32]), vec![7]);
        // An i64 on the stack is written and read at eight bytes already.
        assert_eq!(stack_i32_positions(&[I64, I64, I64, I64, I64, I64, I32]), vec![6]);
    }

    #[test]
    fn a_signature_the_host_calls_or_may_provide_keeps_its_type() {
        use ValType::*;
        let six = vec![I32; 6];
        let widening = Widening::plan(&signatures(vec![six.clone(), six.clone(), vec![I32]], vec![], vec![]));
        // Both indexes of the one signature name one new type, after the
        // module's three.
        assert_eq!((widening.function_type(0), widening.function_type(1), widening.function_type(2)), (3, 3, 2));
        assert_eq!(widening.new_types().count(), 1);
        // Exported by one function, the signature stays for all.
        let widening = Widening::plan(&signatures(vec![six.clone(), six.clone()], vec![1], vec![]));
        assert!(widening.is_empty());
        // Imported with it, likewise.
        let widening = Widening::plan(&signatures(vec![six.clone(), six.clone()], vec![], vec![0]));
        assert!(widening.is_empty());
        let mut with_table = signatures(vec![six], vec![], vec![]);
        with_table.imports_table = true;
        assert!(Widening::plan(&with_table).is_empty());
    }
}
