//! Log lines from inside a SmartModule.
//!
//! A module has no stdout; these functions hand each line to the host, which
//! logs it with the module's name. When the function runs natively (in a
//! unit test) the line goes to stderr instead.

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    /// Detail for debugging a module.
    Debug = 0,
    /// Normal operation.
    Info = 1,
    /// Something unexpected that the module handled.
    Warn = 2,
    /// Something that failed.
    Error = 3,
}

impl Level {
    /// The level from its ABI number; unknown numbers read as `Info`.
    pub fn from_i32(level: i32) -> Level {
        match level {
            0 => Level::Debug,
            2 => Level::Warn,
            3 => Level::Error,
            _ => Level::Info,
        }
    }

    /// Lower-case name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Sends one line at `level` to the host.
pub fn log(level: Level, message: &str) {
    crate::guest::log_line(level, message)
}

/// Logs a formatted line at info level: `log_info!("seen {n} records")`.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) };
}

/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}
