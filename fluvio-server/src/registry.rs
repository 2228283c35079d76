//! The SmartModule registry: named, validated modules kept under
//! `DATA_DIR/smartmodules/NAME.wasm` (the wasm alone; kind and the rest are
//! read from the module), compiled at upload and at start so that a stream
//! starts without compiling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use fluvio_protocol::SmartModuleInfo;
use fluvio_smartengine::{EngineError, SmartEngine, SmartModule};

use crate::storage::{NameError, validate_name};

/// What the registry shows as the status of a module that validated.
pub const STATUS_OK: &str = "SmartModuleStatus";

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is not allowed.
    #[error("invalid SmartModule {0}")]
    InvalidName(#[from] NameError),
    /// A module with that name is registered.
    #[error("SmartModule {0:?} already exists; delete it first with `fluvio smart-module delete {0}`")]
    Exists(String),
    /// No module with that name is registered.
    #[error("SmartModule {0:?} is not registered; register it with `fluvio smart-module create {0} --wasm-file FILE`")]
    NotFound(String),
    /// The module did not validate or compile.
    #[error(transparent)]
    Invalid(#[from] EngineError),
    /// Reading or writing the registry's directory failed.
    #[error("SmartModule registry i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.to_path_buf(), source }
}

/// Registered SmartModules.
pub struct Registry {
    dir: PathBuf,
    engine: SmartEngine,
    modules: RwLock<BTreeMap<String, (SmartModule, Vec<u8>)>>,
}

impl Registry {
    /// Opens the registry and loads every module into `engine`. A module
    /// that no longer loads (built for an older ABI, say) is logged and
    /// skipped, so that one bad file does not keep the server down.
    pub fn open(dir: &Path, engine: SmartEngine) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        fluvio_fs::remove_leftovers(dir).map_err(io_error(dir))?;
        let registry = Registry { dir: dir.to_path_buf(), engine, modules: RwLock::new(BTreeMap::new()) };
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            let wasm = std::fs::read(&path).map_err(io_error(&path))?;
            match registry.engine.load(name, &wasm) {
                Ok(module) => {
                    registry.modules.write().expect("registry lock").insert(name.to_string(), (module, wasm));
                }
                Err(error) => {
                    tracing::error!(module = name, %error, "registered SmartModule no longer loads; skipping it")
                }
            }
        }
        Ok(registry)
    }

    /// Validates and registers a module.
    pub fn create(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo, RegistryError> {
        validate_name(name)?;
        if self.modules.read().expect("registry lock").contains_key(name) {
            return Err(RegistryError::Exists(name.to_string()));
        }
        let module = self.engine.load(name, &wasm)?;
        let path = self.dir.join(format!("{name}.wasm"));
        fluvio_fs::write_atomic(&path, &wasm).map_err(io_error(&path))?;
        let info = info(name, &module);
        self.modules.write().expect("registry lock").insert(name.to_string(), (module, wasm));
        Ok(info)
    }

    /// Deletes a module.
    pub fn delete(&self, name: &str) -> Result<(), RegistryError> {
        if self.modules.write().expect("registry lock").remove(name).is_none() {
            return Err(RegistryError::NotFound(name.to_string()));
        }
        let path = self.dir.join(format!("{name}.wasm"));
        std::fs::remove_file(&path).map_err(io_error(&path))?;
        fluvio_fs::sync_dir(&self.dir).map_err(io_error(&self.dir))?;
        Ok(())
    }

    /// A registered module, compiled, and its wasm.
    pub fn get(&self, name: &str) -> Result<(SmartModule, Vec<u8>), RegistryError> {
        self.modules
            .read()
            .expect("registry lock")
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// A registered module, compiled; what a chain's resolver asks for.
    pub fn module(&self, name: &str) -> Option<SmartModule> {
        self.modules.read().expect("registry lock").get(name).map(|(module, _)| module.clone())
    }

    /// Every module, sorted by name.
    pub fn list(&self) -> Vec<SmartModuleInfo> {
        self.modules.read().expect("registry lock").iter().map(|(name, (module, _))| info(name, module)).collect()
    }
}

/// How a registered module is listed.
pub fn info(name: &str, module: &SmartModule) -> SmartModuleInfo {
    SmartModuleInfo {
        name: name.to_string(),
        kind: module.kind(),
        size: module.wasm_size() as u64,
        status: STATUS_OK.to_string(),
        has_init: module.has_init(),
    }
}
