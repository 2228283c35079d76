//! The SmartModule registry: named, validated modules kept under
//! `DATA_DIR/smartmodules/` (`NAME.wasm` and `NAME.json`), compiled at
//! upload and at start so that a stream starts without compiling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use fluvio_client::engine::{SmartEngine, SmartModule};
use fluvio_client::protocol::{ErrorCode, SmartModuleInfo};

use crate::ServerError;

/// What the registry shows as the status of a module that validated.
pub const STATUS_OK: &str = "SmartModuleStatus";

/// Registered SmartModules.
pub struct Registry {
    dir: PathBuf,
    engine: SmartEngine,
    modules: RwLock<BTreeMap<String, (SmartModule, Vec<u8>)>>,
}

impl Registry {
    /// Opens the registry and loads every module into `engine`.
    pub fn open(dir: &Path, engine: SmartEngine) -> Result<Registry, ServerError> {
        std::fs::create_dir_all(dir).map_err(|e| ServerError::storage(dir, e))?;
        let registry = Registry { dir: dir.to_path_buf(), engine, modules: RwLock::new(BTreeMap::new()) };
        for entry in std::fs::read_dir(dir).map_err(|e| ServerError::storage(dir, e))? {
            let path = entry.map_err(|e| ServerError::storage(dir, e))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            let wasm = std::fs::read(&path).map_err(|e| ServerError::storage(&path, e))?;
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
    pub fn create(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo, ServerError> {
        crate::topics::validate_name(name)
            .map_err(|m| ServerError::new(ErrorCode::InvalidRequest, format!("invalid SmartModule {m}")))?;
        if self.modules.read().expect("registry lock").contains_key(name) {
            return Err(ServerError::new(
                ErrorCode::SmartModuleExists,
                format!(
                    "SmartModule {name:?} already exists; delete it first with `fluvio smart-module delete {name}`"
                ),
            ));
        }
        let module = self
            .engine
            .load(name, &wasm)
            .map_err(|e| ServerError::new(ErrorCode::InvalidSmartModule, e.to_string()))?;
        let path = self.dir.join(format!("{name}.wasm"));
        let tmp = self.dir.join(format!("{name}.wasm.tmp"));
        std::fs::write(&tmp, &wasm).map_err(|e| ServerError::storage(&tmp, e))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| ServerError::storage(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ServerError::storage(&path, e))?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| ServerError::storage(&self.dir, e))?;
        let info = info(name, &module);
        self.modules.write().expect("registry lock").insert(name.to_string(), (module, wasm));
        Ok(info)
    }

    /// Deletes a module.
    pub fn delete(&self, name: &str) -> Result<(), ServerError> {
        if self.modules.write().expect("registry lock").remove(name).is_none() {
            return Err(not_found(name));
        }
        let path = self.dir.join(format!("{name}.wasm"));
        std::fs::remove_file(&path).map_err(|e| ServerError::storage(&path, e))?;
        Ok(())
    }

    /// A registered module, compiled, and its wasm.
    pub fn get(&self, name: &str) -> Result<(SmartModule, Vec<u8>), ServerError> {
        self.modules.read().expect("registry lock").get(name).cloned().ok_or_else(|| not_found(name))
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
        kind: module.kind().into(),
        size: module.wasm_size() as u64,
        status: STATUS_OK.to_string(),
        has_init: module.has_init(),
    }
}

fn not_found(name: &str) -> ServerError {
    ServerError::new(
        ErrorCode::SmartModuleNotFound,
        format!(
            "SmartModule {name:?} is not registered; register it with `fluvio smart-module create {name} --wasm-file FILE`"
        ),
    )
}
