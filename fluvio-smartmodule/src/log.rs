//! Log lines from inside a SmartModule.
//!
//! A module has no stdout; these functions hand each line to the host, which
//! logs it with the module's name. When the function runs natively (in a
//! unit test) the line goes to stderr instead.

pub use smartmodule_abi::log::Level;

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
