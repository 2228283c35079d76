//! SmartModules run in this process: the chain a producer applies before
//! sending, and the one `fluvio smart-module test` runs.

use std::collections::HashMap;
use std::sync::OnceLock;

use fluvio_protocol::{ErrorPolicy, SmartModuleInvocation, SmartModuleInvocationWasm};
use fluvio_smartengine::{ChainBuilder, ChainWorker, EngineError, SmartEngine};

use crate::{Fluvio, FluvioError};

/// The engine chains in this process share, so a module used by several
/// producers is compiled once.
pub fn local_engine() -> &'static SmartEngine {
    static ENGINE: OnceLock<SmartEngine> = OnceLock::new();
    ENGINE.get_or_init(SmartEngine::new)
}

/// Starts a chain of `invocations` in this process, on the
/// [`local_engine`]. Predefined (registered) modules are downloaded from
/// `fluvio`, which must then be given; every module is compiled and
/// initialized before this returns, so a bad module or parameter fails here.
pub async fn local_chain(
    fluvio: Option<&Fluvio>,
    invocations: Vec<SmartModuleInvocation>,
    policy: ErrorPolicy,
) -> Result<ChainWorker, FluvioError> {
    let mut registered: HashMap<String, Vec<u8>> = HashMap::new();
    for invocation in &invocations {
        if let SmartModuleInvocationWasm::Predefined(name) = &invocation.wasm
            && !registered.contains_key(name)
        {
            let fluvio = fluvio.ok_or_else(|| {
                FluvioError::InvalidRequest(format!(
                    "SmartModule {name:?} is registered on a server; connect to one to use it"
                ))
            })?;
            registered.insert(name.clone(), fluvio.get_smartmodule(name).await?.1);
        }
    }
    let engine = local_engine().clone();
    let resolver_engine = engine.clone();
    let chain = ChainBuilder::new(&engine)
        .invocations(invocations)
        .on_error(policy)
        .resolver(move |name| match registered.get(name) {
            Some(wasm) => resolver_engine.load(name, wasm),
            None => Err(EngineError::UnknownModule { name: name.to_string() }),
        })
        .spawn()
        .await?;
    Ok(chain)
}
