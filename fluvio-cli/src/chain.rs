//! Turning SmartModule flags (`--filter`, `--map`, ..., `--smartmodule`,
//! `--smartmodule-path`, `-e`, `--aggregate-initial`, `--window`,
//! `--transforms`) into the chain a producer or consumer applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use fluvio_client::protocol::Lookback;
use fluvio_client::protocol::window::{Window, WindowParts, parse_window};
use fluvio_client::{DeadLetterSink, ErrorPolicy, ModuleKind, SmartModuleExtraParams, SmartModuleInvocation};
use serde::Deserialize;

use crate::error::{CliError, CliResult};

/// SmartModule options shared by `produce`, `consume` and `smart-module test`.
#[derive(Debug, Clone, Default, Args)]
pub struct SmartModuleArgs {
    /// A filter: a registered SmartModule's name, or a path to a .wasm file.
    #[arg(long, value_name = "NAME|PATH")]
    pub filter: Option<String>,
    /// A map: a registered name or a .wasm path.
    #[arg(long, value_name = "NAME|PATH")]
    pub map: Option<String>,
    /// A filter-map: a registered name or a .wasm path.
    #[arg(long = "filter-map", value_name = "NAME|PATH")]
    pub filter_map: Option<String>,
    /// An array-map: a registered name or a .wasm path.
    #[arg(long = "array-map", value_name = "NAME|PATH")]
    pub array_map: Option<String>,
    /// An aggregate: a registered name or a .wasm path.
    #[arg(long, value_name = "NAME|PATH")]
    pub aggregate: Option<String>,
    /// A registered SmartModule of any kind (the kind is read from the module).
    #[arg(long, visible_alias = "sm", value_name = "NAME")]
    pub smartmodule: Option<String>,
    /// A .wasm file of any kind (the kind is read from the module).
    #[arg(long = "smartmodule-path", value_name = "PATH")]
    pub smartmodule_path: Option<PathBuf>,
    /// The initial accumulator of an aggregate.
    #[arg(long = "aggregate-initial", visible_alias = "a-init", value_name = "VALUE")]
    pub aggregate_initial: Option<String>,
    /// Runs the aggregate per key per window of event time:
    /// `tumbling=60s`, `hopping=5m,advance=1m` or `session=30m`, with
    /// `lateness=30s`, `key=/json/pointer`, `time=/json/pointer` and
    /// `emit=every-record` (see docs/smartmodules.md, "Windows").
    #[arg(long, value_name = "SPEC", value_parser = parse_window_flag)]
    pub window: Option<Window>,
    /// A parameter for the SmartModule's init function, as key=value (repeatable).
    #[arg(short = 'e', long = "params", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// A YAML file describing a chain of SmartModules (see `docs/cli.md`).
    #[arg(short = 't', long, value_name = "FILE")]
    pub transforms: Option<PathBuf>,
    /// One transform as JSON, as an entry of a transforms file
    /// (`{"uses":"my-filter","with":{"contains":"a"}}`); repeat for a chain.
    #[arg(long = "transforms-line", value_name = "JSON", conflicts_with = "transforms")]
    pub transforms_line: Vec<String>,
    /// What to do when a SmartModule fails on a record: fail, skip or dead-letter.
    #[arg(long = "on-error", value_name = "POLICY", default_value = "fail")]
    pub on_error: ErrorPolicy,
}

/// A `-e` argument that is not `KEY=VALUE`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not KEY=VALUE")]
pub struct NotKeyValue(String);

fn parse_window_flag(text: &str) -> Result<Window, String> {
    parse_window(text).map_err(|error| error.to_string())
}

fn parse_param(text: &str) -> Result<(String, String), NotKeyValue> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(NotKeyValue(text.to_string())),
    }
}

/// A `--transforms` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformsFile {
    transforms: Vec<Transform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Transform {
    /// A registered name or a .wasm path.
    uses: String,
    /// The kind expected (filter, map, filter-map, array-map, aggregate).
    #[serde(default)]
    kind: Option<String>,
    /// Parameters.
    #[serde(default)]
    with: BTreeMap<String, serde_norway::Value>,
    /// An aggregate's initial accumulator.
    #[serde(default)]
    initial: Option<String>,
    /// Stored records the module's `look_back` is fed before the stream.
    #[serde(default)]
    lookback: Option<LookbackEntry>,
    /// An aggregate's event-time window.
    #[serde(default)]
    window: Option<WindowParts>,
}

/// `lookback: { last: N, age: 1h }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookbackEntry {
    #[serde(default)]
    last: Option<u64>,
    #[serde(default)]
    age: Option<String>,
}

impl Transform {
    /// The invocation this entry describes; `place` names where it was
    /// written, for errors.
    fn invocation(self, base: &Path, place: &str) -> CliResult<SmartModuleInvocation> {
        let mut spec = module(&self.uses, base)?;
        if let Some(kind) = &self.kind {
            let kind = ModuleKind::from_name(kind).ok_or_else(|| {
                CliError::failed(format!(
                    "unknown kind {kind:?} in {place}; use filter, map, filter-map, array-map or aggregate"
                ))
            })?;
            spec = spec.expect_kind(kind);
        }
        for (key, value) in self.with {
            // Strings as they are; numbers, booleans, maps and lists as
            // JSON, which is what Fluvio modules parse them with.
            let value = match value {
                serde_norway::Value::String(s) => s,
                other => serde_json::to_string(&other).map_err(|e| {
                    CliError::failed(format!("parameter {key:?} in {place} cannot be passed as JSON: {e}"))
                })?,
            };
            spec = spec.param(key, value);
        }
        if let Some(initial) = self.initial {
            spec = spec.initial_accumulator(initial);
        }
        if let Some(lookback) = self.lookback {
            let age = match &lookback.age {
                Some(age) => Some(std::time::Duration::from_millis(
                    crate::output::parse_duration_ms(age)
                        .map_err(|e| CliError::failed(format!("lookback age in {place}: {e}")))?,
                )),
                None => None,
            };
            if lookback.last.is_none() && age.is_none() {
                return Err(CliError::failed(format!(
                    "a lookback in {place} needs `last: N`, `age: DURATION` or both"
                )));
            }
            spec = spec.lookback(Lookback { last: lookback.last.unwrap_or(0), age });
        }
        if let Some(window) = self.window {
            let window = window.build().map_err(|e| CliError::failed(format!("window in {place}: {e}")))?;
            spec = spec.window(window);
        }
        Ok(spec)
    }
}

/// Whether a `uses:` names a module on Fluvio's Hub: `owner/name@version`.
fn is_hub_reference(reference: &str) -> bool {
    let Some((owner, rest)) = reference.split_once('/') else { return false };
    let Some((name, version)) = rest.split_once('@') else { return false };
    let word = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    word(owner) && word(name) && word(version) && !reference.ends_with(".wasm")
}

/// A `.wasm` file (read now) when the text names an existing file, ends in
/// `.wasm` or has a `/`; otherwise a registered name.
fn module(reference: &str, base: &Path) -> CliResult<SmartModuleInvocation> {
    let path = base.join(reference);
    if is_hub_reference(reference) && !path.is_file() {
        let name = reference.split_once('/').and_then(|(_, rest)| rest.split_once('@')).map_or(reference, |(n, _)| n);
        return Err(CliError::failed(format!(
            "{reference:?} names a SmartModule on Fluvio's Hub, which this platform does not download from; get its .wasm, register it under a local name with `fluvio sm create {name} --wasm-file FILE.wasm`, and write `uses: {name}`"
        )));
    }
    if reference.ends_with(".wasm") || reference.contains('/') || path.is_file() {
        wasm_file(&path)
    } else {
        Ok(SmartModuleInvocation::predefined(reference))
    }
}

/// The module in a `.wasm` file.
pub fn wasm_file(path: &Path) -> CliResult<SmartModuleInvocation> {
    SmartModuleInvocation::from_file(path).map_err(|e| CliError::failed(e.to_string()))
}

impl SmartModuleArgs {
    /// The chain the flags describe (empty when none was given).
    pub fn chain(&self) -> CliResult<Vec<SmartModuleInvocation>> {
        self.chain_with(None)
    }

    /// The chain, where `extra` (for example `--wasm-file`) counts as one
    /// more SmartModule flag of any kind.
    pub fn chain_with(&self, extra: Option<SmartModuleInvocation>) -> CliResult<Vec<SmartModuleInvocation>> {
        let typed = [
            (&self.filter, ModuleKind::Filter),
            (&self.map, ModuleKind::Map),
            (&self.filter_map, ModuleKind::FilterMap),
            (&self.array_map, ModuleKind::ArrayMap),
            (&self.aggregate, ModuleKind::Aggregate),
        ];
        let mut single: Vec<SmartModuleInvocation> = typed
            .into_iter()
            .filter_map(|(reference, kind)| reference.as_ref().map(|r| Ok(module(r, Path::new(""))?.expect_kind(kind))))
            .collect::<CliResult<_>>()?;
        if let Some(name) = &self.smartmodule {
            single.push(SmartModuleInvocation::predefined(name));
        }
        if let Some(path) = &self.smartmodule_path {
            single.push(wasm_file(path)?);
        }
        single.extend(extra);
        if single.len() > 1 {
            return Err(CliError::failed(
                "give one SmartModule flag (--filter, --map, --filter-map, --array-map, --aggregate, --smartmodule or --smartmodule-path); use --transforms for a chain",
            ));
        }
        if self.transforms.is_some() || !self.transforms_line.is_empty() {
            if !single.is_empty() || self.window.is_some() {
                return Err(CliError::failed(
                    "--transforms and --transforms-line describe the whole chain; do not combine them with another SmartModule flag (a window goes in the transform's `window:`)",
                ));
            }
            return match &self.transforms {
                Some(file) => self.transforms_chain(file),
                None => self.transforms_lines(),
            };
        }
        let params: SmartModuleExtraParams = self.params.iter().cloned().collect();
        if single.is_empty() {
            if !params.is_empty() || self.aggregate_initial.is_some() || self.window.is_some() {
                return Err(CliError::failed("-e, --aggregate-initial and --window need a SmartModule flag"));
            }
            return Ok(Vec::new());
        }
        let mut spec = single.pop().expect("one spec");
        spec.params = params;
        if let Some(initial) = &self.aggregate_initial {
            spec = spec.initial_accumulator(initial.clone());
        }
        if let Some(window) = &self.window {
            spec = spec.window(window.clone());
        }
        Ok(vec![spec])
    }

    fn transforms_chain(&self, file: &Path) -> CliResult<Vec<SmartModuleInvocation>> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CliError::failed(format!("cannot read {}: {e}", file.display())))?;
        let parsed: TransformsFile = serde_norway::from_str(&text)
            .map_err(|e| CliError::failed(format!("{} is not a valid transforms file: {e}", file.display())))?;
        if parsed.transforms.is_empty() {
            return Err(CliError::failed(format!("{} lists no transforms", file.display())));
        }
        let base = file.parent().unwrap_or(Path::new(""));
        let place = file.display().to_string();
        parsed.transforms.into_iter().map(|t| t.invocation(base, &place)).collect()
    }

    fn transforms_lines(&self) -> CliResult<Vec<SmartModuleInvocation>> {
        self.transforms_line
            .iter()
            .map(|line| {
                let transform: Transform = serde_json::from_str(line)
                    .map_err(|e| CliError::failed(format!("--transforms-line {line:?} is not a transform: {e}")))?;
                transform.invocation(Path::new(""), "--transforms-line")
            })
            .collect()
    }

    /// The error policy.
    pub fn policy(&self) -> ErrorPolicy {
        self.on_error
    }

    /// Where dead letters go: stderr, one line each.
    pub fn dead_letters(&self) -> Option<DeadLetterSink> {
        (self.on_error == ErrorPolicy::DeadLetter)
            .then(|| -> DeadLetterSink { std::sync::Arc::new(|failure| eprintln!("dead letter: {failure}")) })
    }
}
