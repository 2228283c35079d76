//! Naming the SmartModules a producer or consumer applies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crate::engine::{ModuleConfig, SmartEngine, SmartModule, SmartModuleKind};
use crate::protocol::{Invocation, ModuleSource};
use crate::{Fluvio, FluvioError};

/// Where a SmartModule comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmartModuleSource {
    /// Registered on the server under a name.
    Registered(String),
    /// A `.wasm` file on this machine.
    Path(PathBuf),
    /// Wasm bytes in memory, with a name for errors and metrics.
    Wasm {
        /// The name.
        name: String,
        /// The bytes.
        bytes: Arc<Vec<u8>>,
    },
}

/// One SmartModule invocation: the module, the kind expected (if any), its
/// parameters and an aggregate's initial accumulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartModuleSpec {
    /// The module.
    pub source: SmartModuleSource,
    /// The kind the caller expects; a module of another kind is refused.
    pub kind: Option<SmartModuleKind>,
    /// Parameters for `init`.
    pub params: BTreeMap<String, String>,
    /// An aggregate's initial accumulator.
    pub initial_accumulator: Option<Vec<u8>>,
}

impl SmartModuleSpec {
    fn new(source: SmartModuleSource) -> SmartModuleSpec {
        SmartModuleSpec { source, kind: None, params: BTreeMap::new(), initial_accumulator: None }
    }

    /// A module registered on the server.
    pub fn registered(name: impl Into<String>) -> SmartModuleSpec {
        SmartModuleSpec::new(SmartModuleSource::Registered(name.into()))
    }

    /// A `.wasm` file.
    pub fn path(path: impl Into<PathBuf>) -> SmartModuleSpec {
        SmartModuleSpec::new(SmartModuleSource::Path(path.into()))
    }

    /// Wasm bytes.
    pub fn wasm(name: impl Into<String>, bytes: Vec<u8>) -> SmartModuleSpec {
        SmartModuleSpec::new(SmartModuleSource::Wasm { name: name.into(), bytes: Arc::new(bytes) })
    }

    /// Requires the module to be of `kind`.
    pub fn expect_kind(mut self, kind: SmartModuleKind) -> SmartModuleSpec {
        self.kind = Some(kind);
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> SmartModuleSpec {
        self.params.insert(name.into(), value.into());
        self
    }

    /// Sets an aggregate's initial accumulator.
    pub fn initial_accumulator(mut self, value: impl Into<Vec<u8>>) -> SmartModuleSpec {
        self.initial_accumulator = Some(value.into());
        self
    }

    /// The parameters and initial accumulator, as the engine takes them.
    pub fn module_config(&self) -> ModuleConfig {
        ModuleConfig { params: self.params.clone(), initial_accumulator: self.initial_accumulator.clone() }
    }

    /// A short name for messages.
    pub fn name(&self) -> String {
        match &self.source {
            SmartModuleSource::Registered(name) | SmartModuleSource::Wasm { name, .. } => name.clone(),
            SmartModuleSource::Path(path) => {
                path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
            }
        }
    }

    fn read_file(path: &PathBuf) -> Result<Vec<u8>, FluvioError> {
        std::fs::read(path).map_err(|e| FluvioError::File { path: path.display().to_string(), reason: e.to_string() })
    }

    /// The invocation sent to the server: registered modules by name, other
    /// modules as compressed wasm.
    pub(crate) fn to_invocation(&self) -> Result<Invocation, FluvioError> {
        let source = match &self.source {
            SmartModuleSource::Registered(name) => ModuleSource::Registered(name.clone()),
            SmartModuleSource::Path(path) => ModuleSource::AdHoc {
                name: self.name(),
                compressed_wasm: crate::protocol::compress(&Self::read_file(path)?),
            },
            SmartModuleSource::Wasm { name, bytes } => {
                ModuleSource::AdHoc { name: name.clone(), compressed_wasm: crate::protocol::compress(bytes) }
            }
        };
        Ok(Invocation {
            source,
            kind: self.kind.map(Into::into),
            params: self.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            initial_accumulator: self.initial_accumulator.clone(),
        })
    }

    /// Loads the module into this process's engine ([`local_engine`]),
    /// fetching a registered module from the server (which must be given).
    pub async fn load(&self, fluvio: Option<&Fluvio>) -> Result<SmartModule, FluvioError> {
        let (name, wasm) = match &self.source {
            SmartModuleSource::Registered(name) => {
                let fluvio = fluvio.ok_or_else(|| {
                    FluvioError::InvalidRequest(format!(
                        "SmartModule {name:?} is registered on a server; connect to one to use it"
                    ))
                })?;
                (name.clone(), fluvio.get_smartmodule(name).await?.1)
            }
            SmartModuleSource::Path(path) => (self.name(), Self::read_file(path)?),
            SmartModuleSource::Wasm { name, bytes } => (name.clone(), bytes.as_ref().clone()),
        };
        let engine = local_engine().clone();
        let module = tokio::task::spawn_blocking(move || engine.load(&name, &wasm))
            .await
            .map_err(|e| FluvioError::InvalidRequest(format!("loading a SmartModule panicked: {e}")))??;
        if let Some(kind) = self.kind {
            module.expect_kind(kind)?;
        }
        Ok(module)
    }
}

/// The engine producers in this process share, so a module used by several
/// producers is compiled once.
pub fn local_engine() -> &'static SmartEngine {
    static ENGINE: OnceLock<SmartEngine> = OnceLock::new();
    ENGINE.get_or_init(SmartEngine::new)
}
