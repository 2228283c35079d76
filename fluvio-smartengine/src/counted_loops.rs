//! Finds the loops whose number of turns the metering can know as they
//! start, so that it can look at the budget once per loop instead of once
//! per turn (see `fuel.rs`).
//!
//! A counted loop is one LLVM writes for `for i in 0..n` and for walks of
//! a slice: an innermost loop, with no calls or bulk operations, whose one
//! way back is a `br_if 0` right before its `end`, on a condition that
//! steps a counter and compares it with zero, a constant or a local the
//! loop never writes:
//!
//! ```wat
//! local.get $i  i32.const -1  i32.add  local.tee $i  br_if 0        ;; i -= 1; i != 0
//! local.get $i  i32.const 16  i32.add  local.tee $i  local.get $end  i32.ne  br_if 0
//! ```
//!
//! The counter is written nowhere else in the loop, and every turn runs
//! that condition (it is at the loop's top level, and the loop cannot go
//! back by any other way). So the turns are those the counter takes to
//! step from its value at the start to the target: with a step of ±2^k,
//! the distance in the step's direction divided by the step, when it
//! divides; when it does not, the counter passes the target for ever and
//! the loop never ends. The rewrite computes that at the loop's start
//! ([`CountedLoop`]'s fields are what it needs) and takes a copy of the
//! loop without the per-turn look only when the turns are few enough.

use wasmparser::{BinaryReaderError, FunctionBody, Operator};

use crate::fuel::is_bulk;

/// Operators a counted loop may have, `loop` and `end` included: the rewrite
/// writes such a loop twice, and a long one turns seldom per operator, so
/// a copy would add compile time for nothing.
const MOST_OPERATORS: usize = 256;

/// What the counter of a counted loop is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `br_if` on the counter itself: the loop ends when it reaches zero.
    Zero,
    /// A constant.
    Constant(i32),
    /// A local the loop does not write.
    Local(u32),
}

/// A counted loop of a function body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountedLoop {
    /// The index of its `loop` among the body's operators.
    pub start: usize,
    /// The index of its `end`.
    pub end: usize,
    /// The local stepped once a turn.
    pub counter: u32,
    /// What it adds to the counter each turn: ±2^k, not zero.
    pub step: i32,
    /// What the counter is compared with.
    pub target: Target,
}

impl CountedLoop {
    /// Operators from `loop` to `end`: at most what one turn runs.
    pub fn operators(&self) -> usize {
        self.end - self.start + 1
    }
}

/// The innermost open loop while it may still be counted.
struct Candidate<'a> {
    start: usize,
    /// The number of labels open outside it.
    depth: usize,
    /// The body's operators since `loop`.
    operators: Vec<Operator<'a>>,
    /// Branches back to its start.
    ways_back: usize,
    /// A call, a bulk operation, a branch out of the function or a
    /// return: left unchecked, any would break the turns' bound.
    ruled_out: bool,
}

/// The counted loops of `body`, in order.
pub(crate) fn counted_loops(body: &FunctionBody<'_>) -> Result<Vec<CountedLoop>, BinaryReaderError> {
    let mut found = Vec::new();
    // Whether each open label is a loop's; the function's own is not listed.
    let mut labels: Vec<bool> = Vec::new();
    let mut candidate: Option<Candidate<'_>> = None;
    let mut operators = body.get_operators_reader()?;
    let mut index = 0;
    while !operators.eof() {
        let operator = operators.read()?;
        if let Some(open) = candidate.as_mut() {
            let goes_back =
                |relative_depth: u32| labels.len().checked_sub(1 + relative_depth as usize) == Some(open.depth);
            let leaves_function = |relative_depth: u32| relative_depth as usize >= labels.len();
            match &operator {
                Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => {
                    open.ways_back += usize::from(goes_back(*relative_depth));
                    open.ruled_out |= leaves_function(*relative_depth);
                }
                Operator::BrTable { targets } => {
                    for target in targets.targets().chain(std::iter::once(Ok(targets.default()))) {
                        let target = target?;
                        open.ways_back += usize::from(goes_back(target));
                        open.ruled_out |= leaves_function(target);
                    }
                }
                Operator::Call { .. }
                | Operator::CallIndirect { .. }
                | Operator::ReturnCall { .. }
                | Operator::ReturnCallIndirect { .. }
                | Operator::Return => open.ruled_out = true,
                other => open.ruled_out |= is_bulk(other),
            }
            open.ruled_out |= open.operators.len() + 1 >= MOST_OPERATORS;
        }
        match operator {
            Operator::Block { .. } | Operator::If { .. } => labels.push(false),
            Operator::Loop { .. } => {
                // An outer loop holding this one is not innermost.
                candidate = Some(Candidate {
                    start: index,
                    depth: labels.len(),
                    operators: Vec::new(),
                    ways_back: 0,
                    ruled_out: false,
                });
                labels.push(true);
                index += 1;
                continue;
            }
            Operator::End => {
                labels.pop();
                if let Some(open) = candidate.take_if(|open| open.depth == labels.len()) {
                    if !open.ruled_out && open.ways_back == 1 {
                        found.extend(counted(&open, index));
                    }
                    index += 1;
                    continue;
                }
            }
            _ => {}
        }
        if let Some(open) = candidate.as_mut() {
            open.operators.push(operator);
        }
        index += 1;
    }
    Ok(found)
}

/// The counted loop `open` is, ending at `end`, if its way back is one of
/// the known conditions.
fn counted(open: &Candidate<'_>, end: usize) -> Option<CountedLoop> {
    let operators = &open.operators;
    let [.., Operator::BrIf { relative_depth: 0 }] = operators.as_slice() else { return None };
    let condition = &operators[..operators.len() - 1];
    let (counter, step, target) = match condition {
        // counter += step; counter != 0
        [.., Operator::LocalGet { local_index: read }, Operator::I32Const { value }, Operator::I32Add, Operator::LocalTee { local_index }]
            if read == local_index =>
        {
            (*local_index, *value, Target::Zero)
        }
        // counter += step; counter != target
        [
            ..,
            Operator::LocalGet { local_index: read },
            Operator::I32Const { value },
            Operator::I32Add,
            Operator::LocalTee { local_index },
            other,
            Operator::I32Ne,
        ]
        // target != (counter += step)
        | [
            ..,
            other,
            Operator::LocalGet { local_index: read },
            Operator::I32Const { value },
            Operator::I32Add,
            Operator::LocalTee { local_index },
            Operator::I32Ne,
        ] if read == local_index => {
            let target = match other {
                Operator::I32Const { value } => Target::Constant(*value),
                Operator::LocalGet { local_index: target } if target != local_index => Target::Local(*target),
                _ => return None,
            };
            (*local_index, *value, target)
        }
        _ => return None,
    };
    if step == 0 || step == i32::MIN || !step.unsigned_abs().is_power_of_two() {
        return None;
    }
    // The counter's one write is the condition's; the target's none.
    let writes = |local: u32| {
        operators
            .iter()
            .filter(|operator| {
                matches!(operator, Operator::LocalSet { local_index } | Operator::LocalTee { local_index } if *local_index == local)
            })
            .count()
    };
    if writes(counter) != 1 || matches!(target, Target::Local(local) if writes(local) != 0) {
        return None;
    }
    Some(CountedLoop { start: open.start, end, counter, step, target })
}

#[cfg(test)]
mod tests {
    use wasmparser::{Parser, Payload};

    use super::{CountedLoop, Target, counted_loops};

    /// The counted loops of the first function of `wat`.
    fn loops_of(wat: &str) -> Vec<CountedLoop> {
        let wasm = wat::parse_str(wat).expect("the test module parses");
        for payload in Parser::new(0).parse_all(&wasm) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                return counted_loops(&body).unwrap();
            }
        }
        panic!("no function")
    }

    fn function(locals: &str, body: &str) -> String {
        format!(r#"(module (memory 1) (func (export "run") {locals} {body}) (func $f))"#)
    }

    /// `br_if` back to `$l` on `($i += step) != $n`.
    fn way_back(step: &str) -> String {
        format!("(br_if $l (i32.ne (local.tee $i (i32.add (local.get $i) (i32.const {step}))) (local.get $n)))")
    }

    #[test]
    fn the_three_conditions_llvm_writes_are_found_with_their_counter_step_and_target() {
        // `i32.const`, `local.set`, then `loop` at 2.
        let down = function(
            "(local $i i32)",
            "(local.set $i (i32.const 5))
             (loop $l nop (br_if $l (local.tee $i (i32.add (local.get $i) (i32.const -1)))))",
        );
        assert_eq!(loops_of(&down), [CountedLoop { start: 2, end: 9, counter: 0, step: -1, target: Target::Zero }]);
        let up_to_local = function("(local $i i32) (local $n i32)", &format!("(loop $l {})", way_back("16")));
        assert_eq!(
            loops_of(&up_to_local),
            [CountedLoop { start: 0, end: 8, counter: 0, step: 16, target: Target::Local(1) }]
        );
        let constant_first = function(
            "(local $i i32)",
            "(loop $l (br_if $l (i32.ne (i32.const 100) (local.tee $i (i32.add (local.get $i) (i32.const 4))))))",
        );
        assert_eq!(
            loops_of(&constant_first),
            [CountedLoop { start: 0, end: 8, counter: 0, step: 4, target: Target::Constant(100) }]
        );
    }

    #[test]
    fn loops_that_could_turn_past_their_count_are_not_counted() {
        let locals = "(local $i i32) (local $n i32)";
        let counted = way_back("1");
        for body in [
            // Steps that are not a power of two, or nothing.
            format!("(loop $l {})", way_back("3")),
            format!("(loop $l {})", way_back("0")),
            format!("(loop $l {})", way_back("-2147483648")),
            // The counter written again in the loop.
            format!("(loop $l (local.set $i (i32.const 0)) {counted})"),
            // The target written in the loop.
            format!("(loop $l (local.set $n (i32.const 9)) {counted})"),
            // Another way back.
            format!("(loop $l (br_if $l (i32.const 0)) {counted})"),
            // A call, a bulk operation, a return.
            format!("(loop $l (call $f) {counted})"),
            format!("(loop $l (memory.fill (i32.const 0) (i32.const 0) (i32.const 1)) {counted})"),
            format!("(loop $l (if (i32.const 0) (then (return))) {counted})"),
            // A branch out of the function.
            format!("(loop $l (br_if 1 (i32.const 0)) {counted})"),
            // A compare other than `!=`.
            "(loop $l (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (local.get $n))))"
                .to_string(),
            // Not innermost.
            format!("(loop $l (loop $m) {counted})"),
            // The condition inside a block, so not run on every turn.
            format!("(loop $l (block {counted}))"),
        ] {
            assert_eq!(loops_of(&function(locals, &body)), [], "{body}");
        }
        // The same loop with nothing wrong is counted: the cases above
        // are refused for what they add.
        assert_eq!(loops_of(&function(locals, &format!("(loop $l {counted})"))).len(), 1);
    }

    #[test]
    fn an_inner_counted_loop_is_found_and_its_outer_loop_is_not() {
        let wat = function(
            "(local $i i32) (local $j i32)",
            "(loop $outer
                (loop $inner (br_if $inner (local.tee $i (i32.add (local.get $i) (i32.const -1)))))
                (br_if $outer (local.tee $j (i32.add (local.get $j) (i32.const -1)))))",
        );
        assert_eq!(loops_of(&wat), [CountedLoop { start: 1, end: 7, counter: 0, step: -1, target: Target::Zero }]);
    }
}
