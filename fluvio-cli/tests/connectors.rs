//! Connectors run by the cluster, through the real `fluvio` command, the
//! real server binary and the real `fluvio-connector` program, writing into
//! a real PostgreSQL server: create (refused with the reason when invalid),
//! restart after kill -9, start again with the cluster, logs, delete.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;
use dev_support::services::Postgres;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fluvio_ok(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let out = cluster.fluvio(args, stdin, Path::new("."));
    assert!(out.status.success(), "fluvio {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// The connector's row of `fluvio connector list`, if listed.
fn listed(cluster: &Cluster, name: &str) -> Option<String> {
    fluvio_ok(cluster, &["connector", "list"], None)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(str::to_string)
}

fn pid_in(row: &str) -> Option<u32> {
    let rest = row.split("(pid ").nth(1)?;
    rest.split([',', ')']).next()?.parse().ok()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.split_whitespace().nth(2) != Some("Z"))
        .unwrap_or(false)
}

fn rows(pg: &Postgres) -> i64 {
    pg.psql("SELECT count(*) FROM supervised").parse().unwrap()
}

fn produce(cluster: &Cluster, ids: std::ops::Range<u32>) {
    let lines: String = ids.map(|id| format!("{{\"id\": {id}, \"name\": \"n{id}\"}}\n")).collect();
    fluvio_ok(cluster, &["produce", "supervised"], Some(&lines));
}

#[test]
fn the_cluster_runs_restarts_and_deletes_connectors() {
    let pg = Postgres::start();
    pg.psql("DROP TABLE IF EXISTS supervised; CREATE TABLE supervised (id int PRIMARY KEY, name text NOT NULL)");
    let cluster = Cluster::start("connectors");
    fluvio_ok(&cluster, &["topic", "create", "supervised"], None);
    let work = cluster.home.join("work");
    std::fs::create_dir_all(&work).unwrap();

    // The database URL is a secret: it must never be printed.
    let config = work.join("sink.yaml");
    std::fs::write(
        &config,
        "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: supervised-sink\n  type: sql-sink\n  topic: supervised\n  \
         secrets: [ { name: SUPERVISED_DB_URL } ]\nsql:\n  url: ${{ secrets.SUPERVISED_DB_URL }}\n  table: supervised\n",
    )
    .unwrap();
    let secrets = work.join("secrets.env");
    std::fs::write(&secrets, format!("SUPERVISED_DB_URL={}\n", pg.url())).unwrap();
    let (config, secrets) = (config.to_str().unwrap(), secrets.to_str().unwrap());

    // Refused at create, with the reason: a missing secret, a bad key.
    let out = cluster.fluvio(&["connector", "create", "--config", config], None, Path::new("."));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("SUPERVISED_DB_URL"), "{}", text(&out.stderr));
    let bad = work.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: bad\n  type: sql-sink\n  topic: supervised\n  \
         producer: { linger: soon }\nsql:\n  url: postgres://127.0.0.1:1/x\n",
    )
    .unwrap();
    let out = cluster.fluvio(&["connector", "create", "--config", bad.to_str().unwrap()], None, Path::new("."));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml") && stderr.contains("linger"), "{stderr}");
    assert!(listed(&cluster, "bad").is_none(), "a refused connector is not kept");

    let created = fluvio_ok(&cluster, &["connector", "create", "--config", config, "--secrets", secrets], None);
    assert!(created.contains("supervised-sink"), "{created}");
    let out = cluster.fluvio(&["connector", "create", "--config", config, "--secrets", secrets], None, Path::new("."));
    assert!(!out.status.success() && text(&out.stderr).contains("exists"), "{}", text(&out.stderr));

    produce(&cluster, 0..100);
    wait_until("the first 100 rows are written", Duration::from_secs(60), || rows(&pg) == 100);
    let row = listed(&cluster, "supervised-sink").unwrap();
    assert!(row.contains("sql-sink") && row.contains("supervised") && row.contains("running"), "{row}");
    assert!(!row.contains(pg.url()), "the list shows a secret: {row}");
    let first_pid = pid_in(&row).expect("a running connector shows its pid");

    // kill -9: the cluster starts it again, and it carries on where it was.
    // SAFETY: SIGKILL to the connector process the list named.
    unsafe { libc::kill(first_pid as i32, libc::SIGKILL) };
    wait_until("the connector runs again", Duration::from_secs(30), || {
        listed(&cluster, "supervised-sink").and_then(|row| pid_in(&row)).is_some_and(|pid| pid != first_pid)
    });
    let row = listed(&cluster, "supervised-sink").unwrap();
    assert!(row.contains("1 restart)"), "{row}");
    produce(&cluster, 100..200);
    wait_until("200 rows are written", Duration::from_secs(60), || rows(&pg) == 200);

    // A cluster restart starts it again.
    fluvio_ok(&cluster, &["cluster", "stop"], None);
    cluster.start_again();
    produce(&cluster, 200..300);
    wait_until("300 rows are written after the cluster restart", Duration::from_secs(60), || rows(&pg) == 300);
    let distinct: i64 = pg.psql("SELECT count(DISTINCT id) FROM supervised").parse().unwrap();
    assert_eq!(distinct, 300, "every record once");

    // Its log has the supervisor's lines and the connector's, never the secret.
    let logs = fluvio_ok(&cluster, &["connector", "logs", "supervised-sink"], None);
    assert!(logs.contains("[supervisor") && logs.contains("killed by signal 9"), "{logs}");
    assert!(logs.contains("streaming"), "{logs}");
    assert!(!logs.contains(pg.url()), "the log shows a secret");
    let log_file = cluster.home.join("data/connectors/supervised-sink/connector.log");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&log_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{} is readable by others", log_file.display());

    // Delete stops the process and forgets the connector.
    let pid = pid_in(&listed(&cluster, "supervised-sink").unwrap()).unwrap();
    fluvio_ok(&cluster, &["connector", "delete", "supervised-sink"], None);
    assert!(listed(&cluster, "supervised-sink").is_none());
    wait_until("the deleted connector's process is gone", Duration::from_secs(20), || !alive(pid));
    produce(&cluster, 300..310);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rows(&pg), 300, "a deleted connector writes nothing");
    let out = cluster.fluvio(&["connector", "logs", "supervised-sink"], None, Path::new("."));
    assert!(!out.status.success() && text(&out.stderr).contains("no connector named"), "{}", text(&out.stderr));
}

/// How many restarts the connector's row of `fluvio connector list` shows.
fn restarts_in(row: &str) -> u32 {
    row.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|pair| matches!(pair[1].trim_end_matches(')'), "restart" | "restarts"))
        .and_then(|pair| pair[0].trim_start_matches('(').parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_connector_that_keeps_failing_is_restarted_with_backoff_not_in_a_tight_loop() {
    let pg = Postgres::start();
    let cluster = Cluster::start("connectors-failing");
    fluvio_ok(&cluster, &["topic", "create", "nowhere"], None);
    let work = cluster.home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // Valid as written, but the table does not exist: the connector stops
    // with that reason each time it starts.
    let config = work.join("sink.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: failing-sink\n  type: sql-sink\n  topic: nowhere\n\
             sql:\n  url: {}\n  table: no_such_table\n",
            pg.url()
        ),
    )
    .unwrap();
    fluvio_ok(&cluster, &["connector", "create", "--config", config.to_str().unwrap()], None);
    wait_until("the connector failed once", Duration::from_secs(30), || {
        listed(&cluster, "failing-sink").is_some_and(|row| restarts_in(&row) >= 1)
    });
    std::thread::sleep(Duration::from_secs(5));
    // Backoff 1 s, 2 s, 4 s...: a handful of restarts in these seconds,
    // not hundreds.
    let row = listed(&cluster, "failing-sink").unwrap();
    let restarts = restarts_in(&row);
    assert!((2..=6).contains(&restarts), "{restarts} restarts: {row}");
    let logs = fluvio_ok(&cluster, &["connector", "logs", "failing-sink"], None);
    assert!(logs.contains("no_such_table") && logs.contains("does not exist"), "{logs}");
    assert!(logs.contains("restarting in"), "{logs}");
    fluvio_ok(&cluster, &["connector", "delete", "failing-sink"], None);
    let out = cluster.fluvio(&["connector", "delete", "failing-sink"], None, Path::new("."));
    assert!(!out.status.success() && text(&out.stderr).contains("no connector named"), "{}", text(&out.stderr));
}
