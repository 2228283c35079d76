//! `fluvio smart-module create|list|delete|test|build`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Subcommand;
use fluvio_client::protocol::BatchBuilder;
use fluvio_client::{Fluvio, SmartModuleInvocationWasm, local_chain};

use crate::chain::{SmartModuleArgs, wasm_file};
use crate::error::{CliError, CliResult};
use crate::{connect, table};

/// The smart-module subcommands.
#[derive(Debug, Subcommand)]
pub enum SmartModuleCommand {
    /// Register a SmartModule on the server (it is validated first).
    Create {
        /// The name to register it under.
        name: String,
        /// The compiled module.
        #[arg(long = "wasm-file", value_name = "FILE")]
        wasm_file: PathBuf,
    },
    /// List registered SmartModules.
    List,
    /// Delete a registered SmartModule.
    Delete {
        /// The name.
        name: String,
        /// Delete it even though derived topics run it: their pipelines
        /// stop until it is registered again and they are resumed.
        #[arg(long)]
        force: bool,
    },
    /// Run SmartModules locally over records, exactly as the server would.
    Test {
        /// The module to test (or use the SmartModule flags below).
        #[arg(long = "wasm-file", value_name = "FILE")]
        wasm_file: Option<PathBuf>,
        /// One record's value.
        #[arg(long, conflicts_with = "file")]
        text: Option<String>,
        /// Records, one per line (default: stdin).
        #[arg(long, value_name = "FILE", conflicts_with = "stdin")]
        file: Option<PathBuf>,
        /// Read the records from stdin, one per line (the default without
        /// --text or --file).
        #[arg(long, conflicts_with = "text")]
        stdin: bool,
        /// Take the whole of --file or stdin as one record, instead of one
        /// per line.
        #[arg(long)]
        raw: bool,
        /// A key for every record.
        #[arg(long)]
        key: Option<String>,
        /// Print each output's key before its value.
        #[arg(short = 'k', long = "key-value")]
        key_value: bool,
        /// The records' timestamp, in milliseconds since the Unix epoch
        /// (default: now).
        #[arg(long = "record-timestamp", value_name = "MS")]
        record_timestamp: Option<i64>,
        /// A record the topic holds already (repeatable), fed to each
        /// module's look_back function before the input, as Fluvio's
        /// `-r/--record` is.
        #[arg(short = 'r', long = "record", value_name = "VALUE")]
        records: Vec<String>,
        /// Look back at the last N records: of the --record records, or
        /// without any, of the input records.
        #[arg(short = 'l', long = "lookback-last", value_name = "N")]
        lookback_last: Option<u64>,
        #[command(flatten)]
        smartmodules: Box<SmartModuleArgs>,
    },
    /// Build the SmartModule project in a directory for wasm32-unknown-unknown
    /// in release mode, and print the path of the .wasm file.
    Build {
        /// The project directory.
        #[arg(long, default_value = ".", value_name = "DIR")]
        path: PathBuf,
    },
}

/// Runs a smart-module subcommand.
pub async fn run(addr: Option<&str>, command: SmartModuleCommand) -> CliResult {
    match command {
        SmartModuleCommand::Create { name, wasm_file } => {
            let wasm = std::fs::read(&wasm_file)
                .map_err(|e| CliError::failed(format!("cannot read {}: {e}", wasm_file.display())))?;
            let info = connect(addr).await?.create_smartmodule(&name, wasm).await?;
            println!("smart-module \"{name}\" created ({}, {} bytes)", info.kind, info.size);
            Ok(())
        }
        SmartModuleCommand::List => {
            let modules = connect(addr).await?.describe_smartmodules(&[]).await?;
            // The ABI column appears when it says something: when a module
            // built with Fluvio's crate is registered.
            let show_abi = modules.iter().any(|m| m.abi != "native");
            let rows: Vec<Vec<String>> = modules
                .iter()
                .map(|m| {
                    let mut row = vec![m.info.name.clone(), m.info.status.clone(), m.info.size.to_string()];
                    if show_abi {
                        row.push(m.abi.clone());
                    }
                    row
                })
                .collect();
            let header: &[&str] =
                if show_abi { &["NAME", "STATUS", "SIZE", "ABI"] } else { &["NAME", "STATUS", "SIZE"] };
            print!("{}", table(header, &rows));
            Ok(())
        }
        SmartModuleCommand::Delete { name, force } => {
            let fluvio = connect(addr).await?;
            if force {
                fluvio.force_delete_smartmodule(&name).await?;
            } else {
                fluvio.delete_smartmodule(&name).await?;
            }
            println!("smart-module \"{name}\" deleted");
            Ok(())
        }
        SmartModuleCommand::Test {
            wasm_file,
            text,
            file,
            stdin: _,
            raw,
            key,
            key_value,
            record_timestamp,
            records,
            lookback_last,
            smartmodules,
        } => {
            let input = TestInput { text, file, raw, key, timestamp: record_timestamp, records, lookback_last };
            test(addr, wasm_file, input, key_value, *smartmodules).await
        }
        SmartModuleCommand::Build { path } => build(&path),
    }
}

/// The records `smart-module test` runs the modules over.
struct TestInput {
    text: Option<String>,
    file: Option<PathBuf>,
    raw: bool,
    key: Option<String>,
    timestamp: Option<i64>,
    records: Vec<String>,
    lookback_last: Option<u64>,
}

async fn test(
    addr: Option<&str>,
    wasm_file: Option<PathBuf>,
    input: TestInput,
    key_value: bool,
    flags: SmartModuleArgs,
) -> CliResult {
    let TestInput { text, file, raw, key, timestamp, records, lookback_last } = input;
    let extra = wasm_file.as_deref().map(self::wasm_file).transpose()?;
    let mut chain = flags.chain_with(extra)?;
    // Fluvio looks back at every --record when -l is not given.
    let lookback_last = lookback_last.or_else(|| (!records.is_empty()).then_some(records.len() as u64));
    if let Some(last) = lookback_last {
        for invocation in &mut chain {
            invocation.params.set_lookback(Some(fluvio_client::protocol::Lookback::last(last)));
        }
    }
    if chain.is_empty() {
        return Err(CliError::failed("nothing to test: give --wasm-file FILE (or --filter, --map, ..., --transforms)"));
    }
    let split = |all: String| if raw { vec![all] } else { all.lines().map(str::to_string).collect() };
    let input = match (text, file) {
        (Some(text), _) => vec![text],
        (None, Some(path)) => split(
            std::fs::read_to_string(&path)
                .map_err(|e| CliError::failed(format!("cannot read {}: {e}", path.display())))?,
        ),
        (None, None) => {
            let mut all = String::new();
            std::io::stdin()
                .read_to_string(&mut all)
                .map_err(|e| CliError::failed(format!("cannot read stdin: {e}")))?;
            split(all)
        }
    };
    // What the look-back reads: the --record records, or the input's own.
    let history = if records.is_empty() { &input } else { &records };
    let needs_server = chain.iter().any(|s| matches!(s.wasm, SmartModuleInvocationWasm::Predefined(_)));
    let fluvio: Option<Fluvio> = if needs_server { Some(connect(addr).await?) } else { None };
    // Records are stamped as a producer would stamp them: now.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut batch = BatchBuilder::new(0, timestamp.unwrap_or(now));
    for line in &input {
        batch.push_value(key.as_deref().map(str::as_bytes), line.as_bytes());
    }
    // The engine runs here exactly as on the server: same chain, same policy.
    let lookbacks: Vec<_> = chain.iter().map(|invocation| invocation.params.lookback().copied()).collect();
    let windowed = chain.iter().any(|invocation| invocation.params.window().is_some());
    let worker = local_chain(fluvio.as_ref(), chain, flags.policy()).await?;
    for (stage, lookback) in lookbacks.into_iter().enumerate() {
        let Some(lookback) = lookback else { continue };
        let skip = history.len().saturating_sub(lookback.last.min(usize::MAX as u64) as usize);
        let mut past = BatchBuilder::new(skip as i64, timestamp.unwrap_or(now));
        for line in &history[skip..] {
            past.push_value(key.as_deref().map(str::as_bytes), line.as_bytes());
        }
        worker.look_back(stage, past.finish()).await?;
    }
    let mut output = worker.process(batch.finish()).await;
    // The input ends here: open windows are emitted, as if the watermark
    // had passed them all.
    if let Ok(processed) = &mut output
        && windowed
        && processed.failure.is_none()
    {
        match worker.finish(input.len() as i64).await {
            Ok(finished) => {
                let mut all = fluvio_client::protocol::BatchBuilder::new(0, 0);
                for record in processed.batch.records().chain(finished.batch.records()) {
                    all.push(0, record.timestamp, record.key, record.value, &record.headers);
                }
                processed.batch = all.finish();
                processed.dead_letters.extend(finished.dead_letters);
                processed.skipped += finished.skipped;
                processed.failure = finished.failure;
            }
            Err(error) => output = Err(error),
        }
    }
    let (_, logs) = worker.metrics_and_logs().await?;
    for log in logs {
        eprintln!("[{} {}] {}", log.module, log.level.name(), log.message);
    }
    let output = output?;
    for letter in &output.dead_letters {
        eprintln!("dead letter: {letter}");
    }
    for record in output.batch.records() {
        let value = String::from_utf8_lossy(record.value);
        if key_value {
            let key = record.key.map_or_else(|| "null".into(), String::from_utf8_lossy);
            println!("[{key}] {value}");
        } else {
            println!("{value}");
        }
    }
    if output.skipped > 0 {
        eprintln!("{} record(s) skipped", output.skipped);
    }
    if let Some(failure) = output.failure {
        return Err(CliError::failed(failure.to_string()));
    }
    Ok(())
}

fn build(path: &Path) -> CliResult {
    let manifest = path.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CliError::failed(format!(
            "{} has no Cargo.toml; run this in a SmartModule project",
            path.display()
        )));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| CliError::failed(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(CliError::failed(
            "cargo build failed (see above); if the target is missing, run `rustup target add wasm32-unknown-unknown`",
        ));
    }
    let metadata = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(&manifest)
        .output()
        .map_err(|e| CliError::failed(format!("cannot run cargo metadata: {e}")))?;
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)
        .map_err(|e| CliError::failed(format!("cannot read cargo metadata: {e}")))?;
    let target_dir = metadata["target_directory"].as_str().unwrap_or("target").to_string();
    let manifest_path = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let package = metadata["packages"]
        .as_array()
        .and_then(|packages| {
            packages.iter().find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest_path.as_path()))
        })
        .ok_or_else(|| CliError::failed("cargo metadata does not list this package"))?;
    let lib = package["targets"]
        .as_array()
        .and_then(|targets| {
            targets.iter().find(|t| t["crate_types"].as_array().is_some_and(|c| c.iter().any(|c| c == "cdylib")))
        })
        .ok_or_else(|| {
            CliError::failed(
                "the package has no cdylib target; add `[lib] crate-type = [\"cdylib\", \"rlib\"]` to Cargo.toml",
            )
        })?;
    let name = lib["name"].as_str().unwrap_or_default().replace('-', "_");
    let wasm = Path::new(&target_dir).join("wasm32-unknown-unknown").join("release").join(format!("{name}.wasm"));
    println!("{}", wasm.display());
    Ok(())
}
