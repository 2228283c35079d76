//! Compile-time behaviour of `#[smartmodule]`: every valid signature
//! compiles, and each mistake is a compile error that says what was expected.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
