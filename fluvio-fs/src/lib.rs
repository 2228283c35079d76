//! Durable file writes: the one way this project replaces a file.
//!
//! [`write_atomic`] writes a temporary file next to the target, syncs it,
//! renames it over the target and syncs the directory. A reader, a crash or
//! a power cut then sees either the old file or the new one, never an empty
//! or half-written file. The topic store (`topic.json`), the SmartModule
//! registry, the segment indexes and the engine's compiled-module cache all
//! write through it.
//!
//! This crate owns nothing else: no formats, no paths of its own.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("fluvio-fs-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("settings.json");
//! fluvio_fs::write_atomic(&path, b"{\"partitions\": 1}")?;
//! assert_eq!(std::fs::read(&path)?, b"{\"partitions\": 1}");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of the temporary files [`write_atomic`] creates; a crash can leave
/// one behind, and [`remove_leftovers`] deletes them.
pub const TEMP_SUFFIX: &str = ".tmp-write";

/// Replaces `path` with `bytes` atomically and durably: write a temporary
/// file in the same directory, `fsync` it, rename it over `path`, `fsync`
/// the directory. The temporary name is unique to this process and call, so
/// concurrent writers of the same path never mix their bytes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Syncs a directory, so that files created, renamed or removed in it stay
/// so after a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes the temporary files an interrupted [`write_atomic`] left in `dir`.
/// Returns how many it deleted.
pub fn remove_leftovers(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(TEMP_SUFFIX)) {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn temp_path(path: &Path) -> PathBuf {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{TEMP_SUFFIX}-{}-{}", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fluvio-fs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_a_file_and_leaves_no_temporary_behind() {
        let dir = temp_dir("replace");
        let path = dir.join("topic.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["topic.json"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = temp_dir("failed");
        let path = dir.join("kept");
        write_atomic(&path, b"old").unwrap();
        // A directory where the file should go makes the rename fail.
        let blocked = dir.join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(remove_leftovers(&dir).unwrap(), 0, "the failed write cleaned up after itself");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_of_an_interrupted_write_are_removed() {
        let dir = temp_dir("leftovers");
        fs::write(temp_path(&dir.join("topic.json")), b"half").unwrap();
        fs::write(dir.join("topic.json"), b"whole").unwrap();
        assert_eq!(remove_leftovers(&dir).unwrap(), 1);
        assert_eq!(fs::read(dir.join("topic.json")).unwrap(), b"whole");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_writers_never_mix_bytes() {
        let dir = temp_dir("concurrent");
        let path = dir.join("shared");
        let writers: Vec<_> = (0..4u8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        write_atomic(&path, &vec![i; 10_000]).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes.iter().all(|b| *b == bytes[0]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
