//! The SmartModule registry: named, validated modules kept under
//! `DATA_DIR/smartmodules/NAME.wasm` (the wasm alone; kind and the rest are
//! read from the module), compiled at upload and at start so that a stream
//! starts without compiling. On a JetStream cluster the modules live in the
//! object store [`SMARTMODULES_BUCKET`] instead, shared by every server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use async_nats::jetstream::object_store;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use fluvio_protocol::SmartModuleInfo;
use fluvio_protocol::requests::SmartModuleDescription;
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
    /// The cluster's shared registry (a JetStream object store) did not
    /// answer.
    #[error("the JetStream cluster could not {action}: {reason}; the request can be retried")]
    Shared {
        /// What was being done.
        action: String,
        /// What NATS said.
        reason: String,
    },
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

/// Where registered modules are kept.
enum Store {
    /// `DIR/NAME.wasm` on local disk.
    Dir(PathBuf),
    /// A JetStream object store shared by every server of a cluster.
    Objects(Box<SharedStore>),
}

/// The object store and the stream under it: listings read the stream's
/// leader, because the store's own listing runs an ordered consumer whose
/// count of pending entries can come from a replica that has not yet seen
/// the latest registration, and then lists nothing.
struct SharedStore {
    objects: object_store::ObjectStore,
    stream: async_nats::jetstream::stream::Stream,
}

/// The object store that holds registered SmartModules on a JetStream
/// cluster.
pub const SMARTMODULES_BUCKET: &str = "fluvio-smartmodules";

/// A compiled module, its wasm, and (on JetStream) the digest of the stored
/// object it came from.
type Loaded = (SmartModule, Vec<u8>, Option<String>);

/// Registered SmartModules.
pub struct Registry {
    store: Store,
    engine: SmartEngine,
    modules: Arc<RwLock<BTreeMap<String, Loaded>>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(watcher) = &self.watcher {
            watcher.abort();
        }
    }
}

fn shared_error(action: &str, error: impl std::fmt::Display) -> RegistryError {
    RegistryError::Shared { action: action.to_string(), reason: error.to_string() }
}

impl Registry {
    /// Opens the registry and loads every module into `engine`. A module
    /// that no longer loads (built for an older ABI, say) is logged and
    /// skipped, so that one bad file does not keep the server down.
    pub fn open(dir: &Path, engine: SmartEngine) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        fluvio_fs::remove_leftovers(dir).map_err(io_error(dir))?;
        let registry =
            Registry { store: Store::Dir(dir.to_path_buf()), engine, modules: Arc::default(), watcher: None };
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".wasm")) else {
                continue;
            };
            let wasm = std::fs::read(&path).map_err(io_error(&path))?;
            match registry.engine.load(name, &wasm) {
                Ok(module) => {
                    registry.modules.write().insert(name.to_string(), (module, wasm, None));
                }
                Err(error) => {
                    tracing::error!(module = name, %error, "registered SmartModule no longer loads; skipping it")
                }
            }
        }
        Ok(registry)
    }

    /// Opens the registry kept in a JetStream cluster's object store
    /// [`SMARTMODULES_BUCKET`], shared by every server of the cluster:
    /// modules are fetched and compiled here when first used, and dropped
    /// here when deleted through any server.
    pub async fn open_shared(
        js: &async_nats::jetstream::Context,
        replicas: usize,
        engine: SmartEngine,
    ) -> Result<Registry, RegistryError> {
        if js.get_object_store(SMARTMODULES_BUCKET).await.is_err() {
            let config = object_store::Config {
                bucket: SMARTMODULES_BUCKET.to_string(),
                description: Some("Fluvio SmartModule registry".into()),
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            };
            if let Err(error) = js.create_object_store(config).await {
                // Another server may have created it meanwhile.
                js.get_object_store(SMARTMODULES_BUCKET)
                    .await
                    .map_err(|_| shared_error("create the SmartModule bucket", error))?;
            }
        }
        // Lookups of one module go to the stream's leader too.
        let stream_name = format!("OBJ_{SMARTMODULES_BUCKET}");
        let stream = crate::storage::jetstream::read_from_leader(js, &stream_name)
            .await
            .map_err(|e| shared_error("configure the SmartModule bucket", e))?;
        let store = js
            .get_object_store(SMARTMODULES_BUCKET)
            .await
            .map_err(|e| shared_error("open the SmartModule bucket", e))?;
        let modules: Arc<RwLock<BTreeMap<String, Loaded>>> = Arc::default();
        let watcher = tokio::spawn(watch_modules(store.clone(), Arc::clone(&modules)));
        Ok(Registry {
            store: Store::Objects(Box::new(SharedStore { objects: store, stream })),
            engine,
            modules,
            watcher: Some(watcher),
        })
    }

    /// Validates and registers a module.
    pub async fn create(&self, name: &str, wasm: Vec<u8>) -> Result<SmartModuleInfo, RegistryError> {
        validate_name(name)?;
        if self.modules.read().contains_key(name) {
            return Err(RegistryError::Exists(name.to_string()));
        }
        let module = tokio::task::block_in_place(|| self.engine.load(name, &wasm))?;
        let digest = match &self.store {
            Store::Dir(dir) => {
                let path = dir.join(format!("{name}.wasm"));
                tokio::task::block_in_place(|| fluvio_fs::write_atomic(&path, &wasm)).map_err(io_error(&path))?;
                None
            }
            Store::Objects(store) => {
                let store = &store.objects;
                if store.info(name).await.is_ok() {
                    return Err(RegistryError::Exists(name.to_string()));
                }
                let stored =
                    store.put(name, &mut wasm.as_slice()).await.map_err(|e| shared_error("store the module", e))?;
                stored.digest
            }
        };
        let info = info(name, &module);
        self.modules.write().insert(name.to_string(), (module, wasm, digest));
        Ok(info)
    }

    /// Deletes a module.
    pub async fn delete(&self, name: &str) -> Result<(), RegistryError> {
        match &self.store {
            Store::Dir(dir) => {
                if self.modules.write().remove(name).is_none() {
                    return Err(RegistryError::NotFound(name.to_string()));
                }
                let path = dir.join(format!("{name}.wasm"));
                std::fs::remove_file(&path).map_err(io_error(&path))?;
                fluvio_fs::sync_dir(dir).map_err(io_error(dir))?;
            }
            Store::Objects(store) => {
                let store = &store.objects;
                self.modules.write().remove(name);
                if store.info(name).await.is_err() {
                    return Err(RegistryError::NotFound(name.to_string()));
                }
                store.delete(name).await.map_err(|e| shared_error("delete the module", e))?;
            }
        }
        Ok(())
    }

    /// Fetches and compiles a module registered through another server.
    async fn fetch(&self, name: &str) -> Result<Option<(SmartModule, Vec<u8>)>, RegistryError> {
        let Store::Objects(store) = &self.store else { return Ok(None) };
        let mut object = match store.objects.get(name).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(shared_error("fetch the module", error)),
        };
        let digest = object.info().digest.clone();
        let mut wasm = Vec::new();
        object.read_to_end(&mut wasm).await.map_err(|e| shared_error("fetch the module", e))?;
        let module = tokio::task::block_in_place(|| self.engine.load(name, &wasm))?;
        self.modules.write().insert(name.to_string(), (module.clone(), wasm.clone(), digest));
        Ok(Some((module, wasm)))
    }

    /// A registered module, compiled, and its wasm.
    pub async fn get(&self, name: &str) -> Result<(SmartModule, Vec<u8>), RegistryError> {
        let known = self.modules.read().get(name).map(|(m, w, _)| (m.clone(), w.clone()));
        if let Some(found) = known {
            return Ok(found);
        }
        self.fetch(name).await?.ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Makes sure the named modules are compiled here (fetching those
    /// registered through another server), so that [`module`](Self::module)
    /// finds them. Unknown names are left for the chain to report.
    pub async fn prepare<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), RegistryError> {
        for name in names {
            if !self.modules.read().contains_key(name) {
                self.fetch(name).await?;
            }
        }
        Ok(())
    }

    /// A registered module, compiled; what a chain's resolver asks for.
    pub fn module(&self, name: &str) -> Option<SmartModule> {
        self.modules.read().get(name).map(|(module, _, _)| module.clone())
    }

    /// Every module, sorted by name.
    pub async fn list(&self) -> Result<Vec<SmartModuleInfo>, RegistryError> {
        self.each(info).await
    }

    /// Every module with its guest ABI, sorted by name.
    pub async fn describe(&self) -> Result<Vec<SmartModuleDescription>, RegistryError> {
        self.each(|name, module| SmartModuleDescription {
            info: info(name, module),
            abi: module.abi().name().to_string(),
        })
        .await
    }

    /// What `view` makes of every module, sorted by name.
    async fn each<T>(&self, view: impl Fn(&str, &SmartModule) -> T) -> Result<Vec<T>, RegistryError> {
        if let Store::Objects(store) = &self.store {
            let names = store.names().await?;
            self.prepare(names.iter().map(String::as_str)).await?;
            let modules = self.modules.read();
            return Ok(names.iter().filter_map(|name| modules.get(name).map(|(m, _, _)| view(name, m))).collect());
        }
        Ok(self.modules.read().iter().map(|(name, (module, _, _))| view(name, module)).collect())
    }
}

impl SharedStore {
    /// The names of the modules in the bucket now, as its stream's leader
    /// knows them.
    async fn names(&self) -> Result<Vec<String>, RegistryError> {
        let listing = |e: &dyn std::fmt::Display| shared_error("list the modules", e);
        let mut subjects =
            self.stream.info_with_subjects(format!("$O.{SMARTMODULES_BUCKET}.M.>")).await.map_err(|e| listing(&e))?;
        let mut names = Vec::new();
        while let Some(entry) = subjects.next().await {
            let (subject, _) = entry.map_err(|e| listing(&e))?;
            let last = self.stream.get_last_raw_message_by_subject(&subject).await.map_err(|e| listing(&e))?;
            let object: object_store::ObjectInfo = serde_json::from_slice(&last.payload).map_err(|e| listing(&e))?;
            if !object.deleted {
                names.push(object.name);
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Drops modules changed or deleted through other servers, so that the
/// next use fetches the current one.
async fn watch_modules(store: object_store::ObjectStore, modules: Arc<RwLock<BTreeMap<String, Loaded>>>) {
    loop {
        match store.watch().await {
            Ok(mut watch) => {
                while let Some(Ok(object)) = watch.next().await {
                    let mut modules = modules.write();
                    let current = modules.get(&object.name).map(|(_, _, digest)| digest.clone());
                    if let Some(digest) = current
                        && (object.deleted || digest != object.digest)
                    {
                        modules.remove(&object.name);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot watch the SmartModule bucket; retrying"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
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
