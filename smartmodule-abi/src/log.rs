//! The levels of the log lines a module hands to its host (the `log`
//! import takes the level as its number).

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
