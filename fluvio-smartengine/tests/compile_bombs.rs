//! Modules that are cheap to send and expensive to compile: each is refused
//! under the default limits, naming the limit it goes past, before the
//! compiler runs; and a compile that outlives its deadline is given up.

mod common;

use common::wasm;
use fluvio_smartengine::{EngineError, Limits, SmartEngine, StructureLimit, StructureLimits};

/// A module of the given functions (each of type `[] -> []`), plus what
/// else goes at the end of the module.
fn module_text(functions: impl IntoIterator<Item = String>, rest: &str) -> Vec<u8> {
    let mut text = String::from("(module (type (func))\n");
    for body in functions {
        text.push_str("(func (type 0) ");
        text.push_str(&body);
        text.push_str(")\n");
    }
    text.push_str(rest);
    text.push(')');
    wat::parse_str(&text).expect("bomb module")
}

fn refused_before_compiling(bomb: &[u8], limit: StructureLimit) -> EngineError {
    let engine = SmartEngine::new();
    let error = engine.load("bomb", bomb).expect_err("a bomb is refused");
    match &error {
        EngineError::TooComplex { module, limit: found_limit, found, max, .. } => {
            assert_eq!((module.as_str(), *found_limit), ("bomb", limit), "{error}");
            assert!(found > max, "{error}");
        }
        other => panic!("expected TooComplex({limit:?}), got {other:?}"),
    }
    assert!(error.to_string().contains(limit.field()), "the message names the limit: {error}");
    assert_eq!(engine.compilations(), 0, "the compiler never ran");
    // The engine still compiles a real module afterwards.
    engine.load("my-filter", &wasm("my-filter")).expect("a real module loads");
    error
}

#[test]
fn deeply_nested_blocks_are_refused() {
    let depth = 50_000;
    let body = format!("{}{}", "block ".repeat(depth), "end ".repeat(depth));
    let error = refused_before_compiling(&module_text([body], ""), StructureLimit::NestingDepth);
    assert!(
        error.to_string().contains("1001 levels of nested blocks in one function (in defined function 0)"),
        "{error}"
    );
}

#[test]
fn too_many_functions_are_refused() {
    let functions = (0..200_000).map(|_| "nop".to_string());
    let error = refused_before_compiling(&module_text(functions, ""), StructureLimit::Functions);
    assert!(error.to_string().contains("has 200000 functions"), "{error}");
}

#[test]
fn too_many_locals_are_refused() {
    let body = format!("(local {})", "i64 ".repeat(20_000));
    refused_before_compiling(&module_text([body], ""), StructureLimit::LocalsPerFunction);
}

#[test]
fn a_huge_br_table_is_refused() {
    let body = format!("block i32.const 0 br_table {} end", "0 ".repeat(40_000));
    refused_before_compiling(&module_text([body], ""), StructureLimit::BrTableTargets);
}

#[test]
fn too_many_data_segments_are_refused() {
    let segments: String = (0..2_000).map(|i| format!("(data (i32.const {i}) \"x\")\n")).collect();
    refused_before_compiling(&module_text([], &format!("(memory 1) {segments}")), StructureLimit::DataSegments);
}

#[test]
fn a_huge_function_body_is_refused() {
    let body = "nop ".repeat(1_200_000);
    refused_before_compiling(&module_text([body], ""), StructureLimit::FunctionBodyBytes);
}

#[test]
fn too_much_code_in_all_is_refused() {
    let functions = (0..12).map(|_| "nop ".repeat(500_000));
    refused_before_compiling(&module_text(functions, ""), StructureLimit::Operators);
}

#[test]
fn lower_limits_refuse_a_real_module_and_name_the_field_to_raise() {
    let limits =
        Limits { structure: StructureLimits { functions: 3, ..StructureLimits::default() }, ..Limits::default() };
    let engine = SmartEngine::with_config(limits, None);
    let error = engine.load("my-filter", &wasm("my-filter")).unwrap_err();
    assert!(matches!(error, EngineError::TooComplex { limit: StructureLimit::Functions, max: 3, .. }), "{error:?}");
    assert!(error.to_string().contains("`functions`"), "{error}");
}

#[test]
fn a_compile_past_its_deadline_is_given_up_and_the_engine_goes_on() {
    let limits = Limits { compile_time: std::time::Duration::from_nanos(1), ..Limits::default() };
    let engine = SmartEngine::with_config(limits, None);
    let error = engine.load("my-filter", &wasm("my-filter")).unwrap_err();
    assert_eq!(error, EngineError::CompileTimeLimitExceeded { module: "my-filter".into(), limit_ms: 0 });
    assert!(error.to_string().contains("to compile"), "{error}");
    // The given-up compile still finishes and frees its place: a patient
    // engine sharing nothing with it is unaffected, and this one counted it.
    assert_eq!(engine.compilations(), 1);
    SmartEngine::new().load("my-filter", &wasm("my-filter")).expect("a real module loads");
}
