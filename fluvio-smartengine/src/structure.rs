//! Structural limits, checked in one pass over a module's bytes before it
//! is compiled.
//!
//! A module is cheap to send and can be very expensive to compile: the
//! compiler's work grows faster than the module's size in nesting depth,
//! in the number of locals and in the number of functions. A 150 KB module
//! of 50,000 nested `block`s took 35 s of CPU to compile, and a server
//! compiles what any client sends with a consume. Reading the module once,
//! which costs about as much as copying it, bounds every one of those
//! dimensions before the compiler sees it.
//!
//! The defaults sit well above what real Rust-built SmartModules have (the
//! largest module in this repository and in Fluvio's examples has a few
//! thousand functions, nests about 60 deep and has a few hundred locals in
//! its largest function): a refusal names the limit, what the module has,
//! and the field of [`StructureLimits`] that raises it.

use std::fmt;

use wasmparser::{Operator, Parser, Payload};

/// Bounds on the shape of a module, checked before it is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructureLimits {
    /// Most functions a module may define.
    pub functions: u32,
    /// Most bytes one function body may have.
    pub function_body_bytes: u32,
    /// Deepest nesting of `block`, `loop` and `if` in one function.
    pub nesting_depth: u32,
    /// Most locals (parameters not counted) one function may declare.
    pub locals_per_function: u32,
    /// Most targets one `br_table` may have.
    pub br_table_targets: u32,
    /// Most data segments a module may have.
    pub data_segments: u32,
    /// Most operators in all function bodies together: the compiler's work
    /// is about proportional to it once the limits above hold.
    pub operators: u64,
}

impl StructureLimits {
    /// 20,000 functions: the largest Rust-built modules we know have a
    /// few thousand.
    pub const DEFAULT_FUNCTIONS: u32 = 20_000;
    /// 1 MiB per function body.
    pub const DEFAULT_FUNCTION_BODY_BYTES: u32 = 1 << 20;
    /// 1,000 levels of nesting: a `match` with many arms compiles to a
    /// nest of blocks as deep as its arms, so this is the limit real code
    /// comes nearest to.
    pub const DEFAULT_NESTING_DEPTH: u32 = 1_000;
    /// 10,000 locals per function.
    pub const DEFAULT_LOCALS_PER_FUNCTION: u32 = 10_000;
    /// 16,384 targets per `br_table`.
    pub const DEFAULT_BR_TABLE_TARGETS: u32 = 16_384;
    /// 1,000 data segments: Rust modules have a handful.
    pub const DEFAULT_DATA_SEGMENTS: u32 = 1_000;
    /// 5 million operators: about a 10 MB module of code, several times
    /// the largest real SmartModule.
    pub const DEFAULT_OPERATORS: u64 = 5_000_000;
}

impl Default for StructureLimits {
    fn default() -> Self {
        StructureLimits {
            functions: Self::DEFAULT_FUNCTIONS,
            function_body_bytes: Self::DEFAULT_FUNCTION_BODY_BYTES,
            nesting_depth: Self::DEFAULT_NESTING_DEPTH,
            locals_per_function: Self::DEFAULT_LOCALS_PER_FUNCTION,
            br_table_targets: Self::DEFAULT_BR_TABLE_TARGETS,
            data_segments: Self::DEFAULT_DATA_SEGMENTS,
            operators: Self::DEFAULT_OPERATORS,
        }
    }
}

/// Which structural limit a module went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructureLimit {
    /// [`StructureLimits::functions`].
    Functions,
    /// [`StructureLimits::function_body_bytes`].
    FunctionBodyBytes,
    /// [`StructureLimits::nesting_depth`].
    NestingDepth,
    /// [`StructureLimits::locals_per_function`].
    LocalsPerFunction,
    /// [`StructureLimits::br_table_targets`].
    BrTableTargets,
    /// [`StructureLimits::data_segments`].
    DataSegments,
    /// [`StructureLimits::operators`].
    Operators,
}

impl StructureLimit {
    /// What is counted, in words.
    fn what(self) -> &'static str {
        match self {
            StructureLimit::Functions => "functions",
            StructureLimit::FunctionBodyBytes => "bytes in one function body",
            StructureLimit::NestingDepth => "levels of nested blocks in one function",
            StructureLimit::LocalsPerFunction => "locals in one function",
            StructureLimit::BrTableTargets => "targets in one br_table",
            StructureLimit::DataSegments => "data segments",
            StructureLimit::Operators => "instructions in all functions",
        }
    }

    /// The name of the [`StructureLimits`] field that sets it.
    pub fn field(self) -> &'static str {
        match self {
            StructureLimit::Functions => "functions",
            StructureLimit::FunctionBodyBytes => "function_body_bytes",
            StructureLimit::NestingDepth => "nesting_depth",
            StructureLimit::LocalsPerFunction => "locals_per_function",
            StructureLimit::BrTableTargets => "br_table_targets",
            StructureLimit::DataSegments => "data_segments",
            StructureLimit::Operators => "operators",
        }
    }
}

impl fmt::Display for StructureLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what())
    }
}

/// A module past one of its [`StructureLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) limit: StructureLimit,
    /// What the module has (for per-function limits, at least this much).
    pub(crate) found: u64,
    pub(crate) max: u64,
    /// The defined function it was found in, for per-function limits.
    pub(crate) function: Option<u32>,
}

/// Reads `wasm` once and returns the first limit it goes past. A module the
/// reader cannot parse passes: the validator reports it with its own words.
pub(crate) fn check(wasm: &[u8], limits: &StructureLimits) -> Result<(), OverLimit> {
    let mut function_index = 0u32;
    let mut operators = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return Ok(()) };
        match payload {
            Payload::FunctionSection(reader) => {
                over(StructureLimit::Functions, reader.count() as u64, limits.functions as u64, None)?;
            }
            Payload::DataSection(reader) => {
                over(StructureLimit::DataSegments, reader.count() as u64, limits.data_segments as u64, None)?;
            }
            Payload::CodeSectionEntry(body) => {
                let function = Some(function_index);
                function_index += 1;
                let range = body.range();
                let body_bytes = range.end - range.start;
                over(StructureLimit::FunctionBodyBytes, body_bytes, limits.function_body_bytes as u64, function)?;
                let Ok(locals_reader) = body.get_locals_reader() else { return Ok(()) };
                let mut locals = 0u64;
                for pair in locals_reader {
                    let Ok((count, _)) = pair else { return Ok(()) };
                    locals += count as u64;
                    over(StructureLimit::LocalsPerFunction, locals, limits.locals_per_function as u64, function)?;
                }
                let Ok(mut reader) = body.get_operators_reader() else { return Ok(()) };
                let mut depth = 0u64;
                while !reader.eof() {
                    let Ok(operator) = reader.read() else { return Ok(()) };
                    operators += 1;
                    match operator {
                        Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                            depth += 1;
                            over(StructureLimit::NestingDepth, depth, limits.nesting_depth as u64, function)?;
                        }
                        Operator::End => depth = depth.saturating_sub(1),
                        Operator::BrTable { targets } => {
                            let count = targets.len() as u64 + 1;
                            over(StructureLimit::BrTableTargets, count, limits.br_table_targets as u64, function)?;
                        }
                        _ => {}
                    }
                }
                over(StructureLimit::Operators, operators, limits.operators, None)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn over(limit: StructureLimit, found: u64, max: u64, function: Option<u32>) -> Result<(), OverLimit> {
    if found > max { Err(OverLimit { limit, found, max, function }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(functions: &[&str]) -> Vec<u8> {
        let mut text = String::from("(module (type (func)) ");
        for body in functions {
            text.push_str(&format!("(func (type 0) {body}) "));
        }
        text.push(')');
        wat::parse_str(&text).expect("test module")
    }

    fn nested_blocks(depth: usize) -> String {
        format!("{}{}", "block ".repeat(depth), "end ".repeat(depth))
    }

    #[test]
    fn a_module_within_every_limit_passes() {
        let wasm = module(&[&nested_blocks(10), "(local i32 i64) nop"]);
        assert_eq!(check(&wasm, &StructureLimits::default()), Ok(()));
    }

    #[test]
    fn nesting_is_counted_per_level_not_per_block() {
        let limits = StructureLimits { nesting_depth: 5, ..StructureLimits::default() };
        // Many blocks side by side are not deep.
        let side_by_side = "block end ".repeat(100);
        assert_eq!(check(&module(&[&side_by_side]), &limits), Ok(()));
        assert_eq!(check(&module(&[&nested_blocks(5)]), &limits), Ok(()));
        let refused = check(&module(&["nop", &nested_blocks(6)]), &limits).unwrap_err();
        assert_eq!(refused, OverLimit { limit: StructureLimit::NestingDepth, found: 6, max: 5, function: Some(1) });
    }

    #[test]
    fn each_limit_is_named_when_passed() {
        let cases: Vec<(StructureLimits, Vec<u8>, StructureLimit)> = vec![
            (
                StructureLimits { functions: 2, ..StructureLimits::default() },
                module(&["nop", "nop", "nop"]),
                StructureLimit::Functions,
            ),
            (
                StructureLimits { locals_per_function: 3, ..StructureLimits::default() },
                module(&["(local i32 i32) (local i64 i64)"]),
                StructureLimit::LocalsPerFunction,
            ),
            (
                StructureLimits { br_table_targets: 3, ..StructureLimits::default() },
                module(&["block block block block i32.const 0 br_table 0 1 2 3 end end end end"]),
                StructureLimit::BrTableTargets,
            ),
            (
                StructureLimits { function_body_bytes: 16, ..StructureLimits::default() },
                module(&[&"nop ".repeat(20)]),
                StructureLimit::FunctionBodyBytes,
            ),
            (
                StructureLimits { operators: 30, ..StructureLimits::default() },
                module(&[&"nop ".repeat(20), &"nop ".repeat(20)]),
                StructureLimit::Operators,
            ),
            (
                StructureLimits { data_segments: 1, ..StructureLimits::default() },
                wat::parse_str(r#"(module (memory 1) (data (i32.const 0) "a") (data (i32.const 1) "b"))"#).unwrap(),
                StructureLimit::DataSegments,
            ),
        ];
        for (limits, wasm, expected) in cases {
            assert_eq!(check(&wasm, &StructureLimits::default()), Ok(()), "{expected:?} within the defaults");
            let refused = check(&wasm, &limits).expect_err("over the limit");
            assert_eq!(refused.limit, expected);
            assert!(refused.found > refused.max, "{refused:?}");
        }
    }
}
