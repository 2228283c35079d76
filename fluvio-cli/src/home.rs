//! Where the CLI keeps its local cluster: `$FLUVIO_HOME`, or `~/.fluvio`.

use std::path::PathBuf;

/// The CLI's home directory (shared with the SDK, which finds the local
/// cluster's address there).
pub fn dir() -> PathBuf {
    fluvio_client::fluvio_home()
}

/// The local server's data directory, unless overridden.
pub fn default_data_dir() -> PathBuf {
    dir().join("data")
}

/// The local server's log file.
pub fn log_file() -> PathBuf {
    dir().join("server.log")
}

/// The local server's process id.
pub fn pid_file() -> PathBuf {
    dir().join("server.pid")
}

/// The address the local server listens on.
pub fn addr_file() -> PathBuf {
    dir().join("server.addr")
}

/// The server address commands use: `--addr`, else what the SDK uses
/// (`$FLUVIO_ADDR`, the local cluster's address, `127.0.0.1:9003`).
pub fn server_addr(flag: Option<&str>) -> String {
    flag.map_or_else(fluvio_client::default_addr, str::to_string)
}

/// A program installed beside this one: `$ENV_VAR` when set, else the file
/// `name` next to this executable, else `name` looked up on PATH.
pub fn sibling_program(name: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from(name)
}
