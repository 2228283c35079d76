//! Criterion benchmarks of the platform, each with a native or peer baseline
//! measured in the same run. The benchmarks live in `benches/benches/`; see
//! `docs/benchmarks.md` for results and the commands that produced them.
