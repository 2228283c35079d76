//! Where the CLI keeps its local cluster: `$FLUVIO_HOME`, or `~/.fluvio`.

use std::path::PathBuf;

/// The CLI's home directory.
pub fn dir() -> PathBuf {
    if let Some(home) = std::env::var_os("FLUVIO_HOME") {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    user_home.join(".fluvio")
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

/// The server address commands use: `--addr`, then `$FLUVIO_ADDR`, then the
/// local cluster's address, then `127.0.0.1:9003`.
pub fn server_addr(flag: Option<&str>) -> String {
    if let Some(addr) = flag {
        return addr.to_string();
    }
    if let Ok(addr) = std::env::var("FLUVIO_ADDR") {
        return addr;
    }
    if let Ok(addr) = std::fs::read_to_string(addr_file()) {
        let addr = addr.trim();
        if !addr.is_empty() {
            return addr.to_string();
        }
    }
    fluvio_client::protocol::DEFAULT_ADDR.to_string()
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
