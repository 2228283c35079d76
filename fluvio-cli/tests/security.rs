//! A cluster with TLS and an access file, used through the real `fluvio`
//! command with credentials from a profile file and the environment, and a
//! connector the cluster runs reaching its TLS-only, token-only server
//! (writing into a real PostgreSQL server).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Cluster;
use dev_support::pki::TestCa;
use dev_support::services::Postgres;

const ADMIN_TOKEN: &str = "cli-admin-token-0123456789";
const APP_TOKEN: &str = "cli-app-token-0123456789ab";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_cli_and_connectors_work_with_tls_tokens_and_profiles() {
    let pki = std::env::temp_dir().join(format!("fluvio-cli-security-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pki);
    let ca = TestCa::new(&pki, "cli");
    let (cert, key) = ca.server("server");
    let access = pki.join("access.toml");
    std::fs::write(
        &access,
        format!(
            "[[principal]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
             [[principal]]\nname = \"app\"\nrole = \"client\"\ntoken = \"{APP_TOKEN}\"\ntopics = [\"events\"]\n"
        ),
    )
    .unwrap();
    let cluster = Cluster::start_with(
        "security",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--access",
            access.to_str().unwrap(),
        ],
    );
    let run = |args: &[&str], stdin: Option<&str>| cluster.fluvio(args, stdin, Path::new("."));
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = run(args, stdin);
        assert!(out.status.success(), "fluvio {args:?} failed: {}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };

    // No profile yet: the command speaks plain TCP to a TLS server.
    let out = run(&["topic", "list"], None);
    assert!(!out.status.success(), "{}", text(&out.stdout));

    // The admin's profile: TLS checked against the test CA, and a token.
    std::fs::write(
        cluster.home.join("config"),
        format!(
            "current_profile = \"local\"\n[profile.local]\ncluster = \"local\"\n[cluster.local]\nendpoint = \"{}\"\ntoken = \"{ADMIN_TOKEN}\"\n[cluster.local.tls]\ntls_policy = \"verified\"\nca_cert = \"{}\"\n",
            cluster.addr(),
            ca.cert().display()
        ),
    )
    .unwrap();
    ok(&["topic", "create", "events"], None);
    ok(&["topic", "create", "audit"], None);
    ok(&["produce", "events"], Some("one\ntwo\n"));
    let consumed = ok(&["consume", "events", "-B", "-d"], None);
    assert_eq!(consumed.lines().collect::<Vec<_>>(), ["one", "two"]);
    let status = ok(&["cluster", "status"], None);
    assert!(status.contains("is running") && !status.contains("does not answer"), "{status}");

    // The environment's token goes over the profile's: a client may use
    // its topic and nothing more, and is told so.
    let as_app = |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = cluster.command(args, Path::new("."));
        command.env("FLUVIO_TOKEN", APP_TOKEN).stdin(std::process::Stdio::piped());
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            if let Some(bytes) = stdin {
                let _ = input.write_all(bytes);
            }
        }
        common::wait_with_timeout(child, Duration::from_secs(60)).expect("fluvio finishes")
    };
    let out = as_app(&["produce", "events"], Some(b"three\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = as_app(&["topic", "list"], None);
    let listed = text(&out.stdout);
    assert!(listed.contains("events") && !listed.contains("audit"), "{listed}");
    let out = as_app(&["topic", "create", "mine"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("needs the admin role"), "{}", text(&out.stderr));
    let out = as_app(&["consume", "audit", "-B", "-d"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("credentials"), "{}", text(&out.stderr));
    let out = {
        let mut command = cluster.command(&["topic", "list"], Path::new("."));
        command.env("FLUVIO_TOKEN", "a-token-nobody-was-given-0000").output().unwrap()
    };
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("not known to this server"), "{}", text(&out.stderr));

    // A connector the cluster runs reaches it through TLS with its own
    // credentials.
    let pg = Postgres::start();
    pg.psql("CREATE TABLE secured (id int PRIMARY KEY, name text NOT NULL)");
    let work = cluster.home.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let config = work.join("sink.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: secured-sink\n  type: sql-sink\n  topic: audit\nsql:\n  url: {}\n  table: secured\n",
            pg.url()
        ),
    )
    .unwrap();
    ok(&["connector", "create", "--config", config.to_str().unwrap()], None);
    let lines: String = (0..20).map(|id| format!("{{\"id\": {id}, \"name\": \"n{id}\"}}\n")).collect();
    ok(&["produce", "audit"], Some(&lines));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows: i64 = pg.psql("SELECT count(*) FROM secured").parse().unwrap();
        if rows == 20 {
            break;
        }
        if Instant::now() > deadline {
            let logs = ok(&["connector", "logs", "secured-sink"], None);
            panic!("the connector wrote {rows} of 20 rows in 60 s; its log:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&pki);
}
