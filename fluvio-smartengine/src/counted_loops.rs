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

/// Operators a counted loop may have, `loop` and `end` included. The
/// rewrite writes such a loop twice, which the compiler pays for, and a
/// long loop turns seldom for its size. At 32 the benchmark modules' hot
/// loops (a search, a copy, an uppercase of a value) all fit, and the regex
/// module's compile does about 2% more work than with no copies; at 256 it
/// did 4%, and at 20 the map's and the count's loops no longer fit.
const MOST_OPERATORS: usize = 32;

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
    /// Its operators, `loop` and `end` included: at most what one turn
    /// runs.
    pub operators: usize,
    /// The local stepped once a turn.
    pub counter: u32,
    /// What it adds to the counter each turn: ±2^k, not zero.
    pub step: i32,
    /// What the counter is compared with.
    pub target: Target,
}

/// What the rewrite writes next: an operator as it is, or a counted loop
/// whole (its operators, `loop` to `end`).
pub(crate) enum Piece<'a> {
    Operator(Operator<'a>),
    Counted(CountedLoop, Vec<Operator<'a>>),
}

/// A function body's operators, with its counted loops found as they are
/// read: in one pass, since the rewrite's time is part of every cold
/// compile. An innermost loop is held back until its `end` says whether
/// it is counted; a loop found inside it, or anything that rules it out,
/// lets what was held go on as it is.
pub(crate) struct Pieces<'a> {
    operators: wasmparser::OperatorsReader<'a>,
    /// Labels open at the operator read last (the function's own not
    /// counted).
    open: usize,
    held: Option<HeldLoop<'a>>,
    /// Operators let go, to hand out before reading on.
    released: std::collections::VecDeque<Operator<'a>>,
}

/// An innermost loop being read.
struct HeldLoop<'a> {
    /// Its operators so far, `loop` first.
    operators: Vec<Operator<'a>>,
    /// Labels open outside it.
    outer: usize,
    /// Branches back to its start.
    ways_back: usize,
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(body: &FunctionBody<'a>) -> Result<Pieces<'a>, BinaryReaderError> {
        Ok(Pieces { operators: body.get_operators_reader()?, open: 0, held: None, released: Default::default() })
    }

    /// The next piece, or `None` at the body's end.
    pub(crate) fn next(&mut self) -> Result<Option<Piece<'a>>, BinaryReaderError> {
        loop {
            if let Some(operator) = self.released.pop_front() {
                return Ok(Some(Piece::Operator(operator)));
            }
            if self.operators.eof() {
                // A valid body ends every loop before its own `end`.
                if let Some(held) = self.held.take() {
                    self.released.extend(held.operators);
                    continue;
                }
                return Ok(None);
            }
            let operator = self.operators.read()?;
            if let Operator::Loop { .. } = operator {
                // An outer loop holding this one is not innermost.
                if let Some(held) = self.held.take() {
                    self.released.extend(held.operators);
                }
                self.held = Some(HeldLoop { operators: vec![operator], outer: self.open, ways_back: 0 });
                self.open += 1;
                continue;
            }
            // Labels open inside the held loop before this operator.
            let inner = self.held.as_ref().map(|held| self.open - held.outer - 1);
            match operator {
                Operator::Block { .. } | Operator::If { .. } => self.open += 1,
                Operator::End => self.open = self.open.saturating_sub(1),
                _ => {}
            }
            let (Some(held), Some(inner)) = (self.held.as_mut(), inner) else {
                return Ok(Some(Piece::Operator(operator)));
            };
            let (ended, rules_out) = held.follow(&operator, inner)?;
            let ruled_out = rules_out || held.operators.len() + 1 > MOST_OPERATORS;
            held.operators.push(operator);
            if ended || ruled_out {
                let held = self.held.take().expect("held above");
                match held.counted().filter(|_| ended && !ruled_out) {
                    Some(counted) => return Ok(Some(Piece::Counted(counted, held.operators))),
                    None => self.released.extend(held.operators),
                }
            }
        }
    }
}

impl HeldLoop<'_> {
    /// Follows `operator`, read with `inner` labels open inside the loop:
    /// counts its branches back to the loop's start, and returns whether
    /// it is the loop's `end` and whether it keeps the loop from being
    /// counted (a call, a bulk operation, a branch out of the function or
    /// a return, any of which would break the turns' bound left
    /// unchecked).
    fn follow(&mut self, operator: &Operator<'_>, inner: usize) -> Result<(bool, bool), BinaryReaderError> {
        let outer = self.outer;
        let ways_back = &mut self.ways_back;
        // A branch back to the loop's start is counted; one past the
        // labels outside the loop leaves the function.
        let mut branch = |relative_depth: u32| {
            *ways_back += usize::from(relative_depth as usize == inner);
            relative_depth as usize > inner + outer
        };
        Ok(match operator {
            Operator::End => (inner == 0, false),
            Operator::Br { relative_depth } | Operator::BrIf { relative_depth } => (false, branch(*relative_depth)),
            Operator::BrTable { targets } => {
                let mut leaves = false;
                for target in targets.targets().chain(std::iter::once(Ok(targets.default()))) {
                    leaves |= branch(target?);
                }
                (false, leaves)
            }
            Operator::Call { .. }
            | Operator::CallIndirect { .. }
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::Return => (false, true),
            other => (false, is_bulk(other)),
        })
    }

    /// The counted loop this is, once its `end` is read, if its way back
    /// is the only one and one of the known conditions.
    fn counted(&self) -> Option<CountedLoop> {
        if self.ways_back != 1 {
            return None;
        }
        let operators = &self.operators;
        let [.., Operator::BrIf { relative_depth: 0 }, Operator::End] = operators.as_slice() else { return None };
        let condition = &operators[..operators.len() - 2];
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
        Some(CountedLoop { operators: operators.len(), counter, step, target })
    }
}

#[cfg(test)]
mod tests {
    use wasmparser::{Parser, Payload};

    use super::{CountedLoop, Piece, Pieces, Target};

    /// The counted loops of the first function of `wat`, each with where
    /// it starts among the pieces, and every operator handed out once, in
    /// order.
    fn loops_of(wat: &str) -> Vec<(usize, CountedLoop)> {
        let wasm = wat::parse_str(wat).expect("the test module parses");
        for payload in Parser::new(0).parse_all(&wasm) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut pieces = Pieces::new(&body).unwrap();
                let (mut found, mut handed_out) = (Vec::new(), Vec::new());
                while let Some(piece) = pieces.next().unwrap() {
                    match piece {
                        Piece::Operator(operator) => handed_out.push(operator),
                        Piece::Counted(counted, operators) => {
                            assert_eq!(counted.operators, operators.len());
                            found.push((handed_out.len(), counted));
                            handed_out.extend(operators);
                        }
                    }
                }
                let all: Vec<_> = body.get_operators_reader().unwrap().into_iter().map(Result::unwrap).collect();
                assert_eq!(handed_out, all, "operators lost, added or out of order");
                return found;
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
        assert_eq!(loops_of(&down), [(2, CountedLoop { operators: 8, counter: 0, step: -1, target: Target::Zero })]);
        let up_to_local = function("(local $i i32) (local $n i32)", &format!("(loop $l {})", way_back("16")));
        assert_eq!(
            loops_of(&up_to_local),
            [(0, CountedLoop { operators: 9, counter: 0, step: 16, target: Target::Local(1) })]
        );
        let constant_first = function(
            "(local $i i32)",
            "(loop $l (br_if $l (i32.ne (i32.const 100) (local.tee $i (i32.add (local.get $i) (i32.const 4))))))",
        );
        assert_eq!(
            loops_of(&constant_first),
            [(0, CountedLoop { operators: 9, counter: 0, step: 4, target: Target::Constant(100) })]
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
        assert_eq!(loops_of(&wat), [(1, CountedLoop { operators: 7, counter: 0, step: -1, target: Target::Zero })]);
    }
}
