//! `fluvio cluster start|status|stop` when the recorded server is gone:
//! killed with SIGKILL, its pid file left behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;

fn recorded_pid(cluster: &Cluster) -> i32 {
    std::fs::read_to_string(cluster.home.join("server.pid")).expect("a pid file").trim().parse().expect("a pid")
}

/// Gone: no process, or only a zombie left for a parent that never reaps.
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
    }
}

#[test]
fn start_after_kill_9_replaces_the_stale_server() {
    // The servers `fluvio cluster start` leaves behind are adopted by this
    // process, which does not reap them: a killed one stays a zombie, as
    // under a supervisor or a container's init that never reaps. Its pid
    // then still "exists".
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes who adopts
    // orphaned descendants of this process.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    let cluster = Cluster::start("stale-server");
    let old_pid = recorded_pid(&cluster);
    let old_addr = cluster.addr();
    let killed = std::process::Command::new("kill").args(["-9", &old_pid.to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_gone(old_pid) {
        assert!(Instant::now() < deadline, "the killed server went away");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Status does not claim a server that cannot answer.
    let status = cluster.fluvio(&["cluster", "status"], None, Path::new("."));
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(3), "status exits with 'no server': {stderr}");
    assert!(stderr.contains(&format!("(pid {old_pid}) is no longer running")), "{stderr}");

    // Start says what it found, cleans up, and starts a server that answers.
    let start = cluster.fluvio(&["cluster", "start", "--listen", "127.0.0.1:0"], None, Path::new("."));
    let stdout = String::from_utf8_lossy(&start.stdout);
    assert!(start.status.success(), "{stdout}{}", String::from_utf8_lossy(&start.stderr));
    assert!(stdout.contains(&format!("recorded before (pid {old_pid}) is no longer running")), "{stdout}");
    assert!(stdout.contains("started the local Fluvio server"), "{stdout}");
    assert_ne!(recorded_pid(&cluster), old_pid);
    let new_addr = cluster.addr();
    assert!(std::net::TcpStream::connect(&new_addr).is_ok(), "the new server answers on {new_addr} (was {old_addr})");
    let listed = cluster.fluvio(&["topic", "list"], None, Path::new("."));
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let created = cluster.fluvio(&["topic", "create", "greetings", "-p", "2"], None, Path::new("."));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let status = cluster.fluvio(&["cluster", "status"], None, Path::new("."));
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    // A short summary of what the server holds.
    let summary = String::from_utf8_lossy(&status.stdout);
    assert!(summary.contains(&format!("servers: 1 ({new_addr})")), "{summary}");
    assert!(summary.contains("topics: 1 (2 partitions), 0 records appended"), "{summary}");
    assert!(summary.contains("consumers: 0 ids"), "{summary}");
}
