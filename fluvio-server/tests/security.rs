//! TLS and access control against the real server binary on loopback, with
//! certificates made by `openssl`: the server refuses plain TCP beyond
//! loopback, clients check its certificate, and principals (by token or
//! client certificate) can do what their role and topics allow, no more.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ServerProcess, data_dir, from_beginning, produce, read_all, values};
use dev_support::pki::TestCa;
use fluvio_client::protocol::messages::ErrorResponse;
use fluvio_client::protocol::requests::{AuthenticateRequest, ProduceRequest, StreamFetchRequest};
use fluvio_client::protocol::{ApiKind, BatchBuilder, ErrorCode, Frame, RESPONSE_BIT};
use fluvio_client::{ConsumerConfig, Fluvio, FluvioClusterConfig, FluvioError, OffsetSpec, TlsConfig};
use futures::StreamExt;
use tokio::net::TcpStream;

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const APP_TOKEN: &str = "orders-app-token-0123456789";

fn access_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("access.toml");
    std::fs::write(
        &path,
        format!(
            "[[principal]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
             [[principal]]\nname = \"orders-app\"\nrole = \"client\"\ntoken = \"{APP_TOKEN}\"\ntopics = [\"orders\", \"orders-*\"]\n\n\
             [[principal]]\nname = \"billing\"\nrole = \"client\"\ntopics = [\"payments\"]\n"
        ),
    )
    .unwrap();
    path
}

fn code(error: &FluvioError) -> Option<ErrorCode> {
    error.code()
}

/// A server with TLS, client certificates from `ca` and the access file.
fn secure_server(name: &str, ca: &TestCa, dir: &Path) -> ServerProcess {
    let (cert, key) = ca.server("server");
    let access = access_file(dir);
    ServerProcess::start(
        &data_dir(name),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            ca.cert().to_str().unwrap(),
            "--access",
            access.to_str().unwrap(),
        ],
    )
}

async fn connect(addr: &str, tls: TlsConfig, token: Option<&str>) -> Result<Fluvio, FluvioError> {
    let mut config = FluvioClusterConfig::new(addr).with_tls(tls);
    config.token = token.map(str::to_string);
    Fluvio::connect_with_config(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_principals_guard_every_request() {
    let dir = data_dir("security-pki");
    let ca = TestCa::new(&dir, "good");
    let other_ca = TestCa::new(&dir, "other");
    let server = secure_server("security", &ca, &dir);
    let trusted = TlsConfig::with_ca(ca.cert());

    // The client checks the server: an unknown authority, or a name the
    // certificate does not carry, ends at the handshake.
    let error = connect(&server.addr, TlsConfig::with_ca(other_ca.cert()), Some(ADMIN_TOKEN)).await.unwrap_err();
    assert!(matches!(error, FluvioError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("invalid peer certificate: UnknownIssuer"), "{error}");
    let error =
        connect(&server.addr, trusted.clone().domain("fluvio.example.com"), Some(ADMIN_TOKEN)).await.unwrap_err();
    assert!(matches!(error, FluvioError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("not valid for name \"fluvio.example.com\""), "{error}");

    // Plain TCP to a TLS server is told, at once and in plain frames, what
    // it lacks (not retried: it would be refused again).
    // The client asks the server's version when it connects: the refusal
    // comes then.
    let started = std::time::Instant::now();
    let error = Fluvio::connect_with_config(&FluvioClusterConfig::new(&server.addr)).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::BadFrame), "{error}");
    assert!(error.to_string().contains("accepts only TLS connections"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "refused without retrying for long");

    // TLS but no credentials: nothing but authenticating is answered, so
    // the client is refused when it connects (and asks the version).
    let error = connect(&server.addr, trusted.clone(), None).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Unauthenticated), "{error}");
    assert!(error.to_string().contains("FLUVIO_TOKEN"), "{error}");

    // A wrong token is refused when connecting.
    let error = connect(&server.addr, trusted.clone(), Some("not-a-token-anyone-has-0000")).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Unauthenticated), "{error}");

    // The admin sets the cluster up.
    let admin = connect(&server.addr, trusted.clone(), Some(ADMIN_TOKEN)).await.unwrap();
    for topic in ["orders", "orders-eu", "payments"] {
        admin.create_topic(topic, 1).await.unwrap();
    }
    admin.create_smartmodule("keep-a", common::wasm("my-filter")).await.unwrap();
    produce(&admin, "payments", &["p1", "p2"]).await;

    // A client produces and consumes on its topics, through a registered
    // SmartModule too, and sees only its topics.
    let app = connect(&server.addr, trusted.clone(), Some(APP_TOKEN)).await.unwrap();
    let offsets = produce(&app, "orders", &["apple", "kiwi", "banana"]).await;
    assert_eq!(offsets, vec![Some(0), Some(1), Some(2)]);
    assert_eq!(values(&read_all(&app, "orders", from_beginning()).await), ["apple", "kiwi", "banana"]);
    let filter = fluvio_client::SmartModuleInvocation::predefined("keep-a");
    let filtered = read_all(&app, "orders", from_beginning().smartmodule(filter)).await;
    assert_eq!(values(&filtered), ["apple", "banana"]);
    produce(&app, "orders-eu", &["eu"]).await;
    let names: Vec<String> = app.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["orders", "orders-eu"]);

    // ... and nothing else (the SDK does not even see the other topics).
    let error = app.topic_producer("payments").await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::TopicNotFound), "{error}");
    assert!(error.to_string().contains("credentials"), "{error}");
    // The refusal comes as the stream's first item.
    let mut denied =
        app.consumer_stream("payments", ConsumerConfig { partitions: vec![0], ..from_beginning() }).await.unwrap();
    let error = denied.next().await.expect("the stream says why it ends").map(|_| ()).unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    let error = app.create_topic("mine", 1).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    assert!(error.to_string().contains("admin"), "{error}");
    let error = app.delete_topic("payments").await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    let error = app.create_smartmodule("mine", common::wasm("my-filter")).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    let error = app.commit_offset("reader", "payments", 0, 1).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    let error = app.fetch_offset("reader", "payments", 0).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    let error = app.list_connectors().await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    // Nothing of it reached the stored data.
    assert_eq!(values(&read_all(&admin, "payments", from_beginning()).await), ["p1", "p2"]);
    let names: Vec<String> = admin.list_topics().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["orders", "orders-eu", "payments"]);

    // A client certificate whose common name is a principal's is that
    // principal, with no token.
    let (cert, key) = ca.client("billing", "billing");
    let billing = connect(&server.addr, trusted.clone().client_certificate(&cert, &key), None).await.unwrap();
    produce(&billing, "payments", &["p3"]).await;
    assert_eq!(values(&read_all(&billing, "payments", from_beginning()).await), ["p1", "p2", "p3"]);
    let error = billing.create_topic("x", 1).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::PermissionDenied), "{error}");
    // A certificate of an unknown name, or from another authority, is not.
    let (cert, key) = ca.client("stranger", "stranger");
    let error = connect(&server.addr, trusted.clone().client_certificate(&cert, &key), None).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Unauthenticated), "{error}");
    let (cert, key) = other_ca.client("forged", "billing");
    let forged = connect(&server.addr, trusted.clone().client_certificate(&cert, &key), None).await;
    // TLS 1.3 refuses a client certificate after the client's side of the
    // handshake is done: the refusal arrives with the first request.
    let error = match forged {
        Err(error) => error,
        Ok(forged) => forged.list_topics().await.unwrap_err(),
    };
    assert!(matches!(error, FluvioError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("UnknownCA"), "{error}");
}

#[test]
fn a_server_refuses_plain_tcp_beyond_loopback_unless_told_insecure() {
    let dir = data_dir("security-insecure");
    // Refused before anything is bound: no socket beyond loopback is opened.
    let out = Command::new(env!("CARGO_BIN_EXE_fluvio-server"))
        .args(["--addr", "0.0.0.0:0", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without TLS") && stderr.contains("--insecure"),
        "{stderr}"
    );
    // A bad access file stops the start with its reason.
    let access = dir.with_extension("toml");
    std::fs::write(&access, "[[principal]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"short\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fluvio-server"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .arg("--access")
        .arg(&access)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("access file") && stderr.contains("fewer than 16"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_without_tls_on_loopback_and_profiles_carry_them() {
    let dir = data_dir("security-plain-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let access = access_file(&dir);
    let server = ServerProcess::start(&data_dir("security-plain"), &["--access", access.to_str().unwrap()]);
    let admin =
        Fluvio::connect_with_config(&FluvioClusterConfig::new(&server.addr).with_token(ADMIN_TOKEN)).await.unwrap();
    admin.create_topic("orders", 1).await.unwrap();
    let error = Fluvio::connect_to(&server.addr).await.unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::Unauthenticated), "{error}");
    // A profile file names the cluster and its token.
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config"),
        format!(
            "current_profile = \"app\"\n[profile.app]\ncluster = \"app\"\n[cluster.app]\nendpoint = \"{}\"\ntoken = \"{APP_TOKEN}\"\n",
            server.addr
        ),
    )
    .unwrap();
    let file = fluvio_client::ConfigFile::load(&home.join("config")).unwrap().unwrap();
    let config = file.cluster(None).unwrap().unwrap().clone();
    let app = Fluvio::connect_with_config(&config).await.unwrap();
    produce(&app, "orders", &["from a profile"]).await;
    assert_eq!(values(&read_all(&admin, "orders", from_beginning()).await), ["from a profile"]);

    // The server itself refuses what the SDK would not even send: raw
    // frames from an authenticated client to a topic it may not use.
    admin.create_topic("payments", 1).await.unwrap();
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    Frame::new(ApiKind::Authenticate as u16, 1, &AuthenticateRequest { token: APP_TOKEN.into() }, Vec::new())
        .write(&mut socket)
        .await
        .unwrap();
    let answer = Frame::read(&mut socket, u32::MAX).await.unwrap();
    assert_eq!(answer.kind, ApiKind::Authenticate as u16 | RESPONSE_BIT);
    let mut batch = BatchBuilder::new(0, 0);
    batch.push_value(None, b"stolen");
    let batch = batch.finish().into_bytes();
    let produce_request =
        ProduceRequest { topic: "payments".into(), partition: 0, producer: None, follows: None, batch };
    Frame::request(2, produce_request).write(&mut socket).await.unwrap();
    let refused = Frame::read(&mut socket, u32::MAX).await.unwrap();
    let error: ErrorResponse = refused.control().unwrap();
    assert_eq!((refused.correlation_id, error.code), (2, ErrorCode::PermissionDenied), "{}", error.message);
    let fetch = StreamFetchRequest {
        topic: "payments".into(),
        partition: 0,
        offset: OffsetSpec::Beginning,
        continuous: false,
        chain: Vec::new(),
        policy: Default::default(),
        max_bytes: 1 << 20,
        consumer_id: None,
    };
    Frame::new(ApiKind::StreamFetch as u16, 3, &fetch, Vec::new()).write(&mut socket).await.unwrap();
    let refused = Frame::read(&mut socket, u32::MAX).await.unwrap();
    let error: ErrorResponse = refused.control().unwrap();
    assert_eq!((refused.correlation_id, error.code), (3, ErrorCode::PermissionDenied), "{}", error.message);
    assert!(read_all(&admin, "payments", from_beginning()).await.is_empty(), "nothing was stored");
    // A wrong token is answered and the connection closed.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    Frame::new(
        ApiKind::Authenticate as u16,
        1,
        &AuthenticateRequest { token: "guess-guess-guess-guess".into() },
        Vec::new(),
    )
    .write(&mut socket)
    .await
    .unwrap();
    let refused = Frame::read(&mut socket, u32::MAX).await.unwrap();
    assert_eq!(refused.control::<ErrorResponse>().unwrap().code, ErrorCode::Unauthenticated);
    assert!(Frame::read(&mut socket, u32::MAX).await.is_err(), "the connection is closed");
}

/// Before it has authenticated, a connection to a server with an access
/// file may send one small `Authenticate` and nothing else, within the login
/// deadline: anything else is answered once and the connection closed, a
/// large frame is refused before its body is read, and a silent connection
/// is closed when the deadline passes. Once authenticated, none of that
/// applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_login_only_a_small_authenticate_is_read_and_only_for_a_while() {
    use fluvio_client::protocol::requests::{ListTopicsRequest, ListTopicsResponse};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = data_dir("security-login-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let access = access_file(&dir);
    let server = ServerProcess::start(
        &data_dir("security-login"),
        &["--access", access.to_str().unwrap(), "--login-timeout-secs", "1"],
    );
    let closed = |read: Result<Frame, fluvio_client::protocol::FrameError>| read.is_err();

    // Any request but Authenticate: refused once, then the connection ends.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    Frame::request(1, ListTopicsRequest).write(&mut socket).await.unwrap();
    let refused = Frame::read(&mut socket, u32::MAX).await.unwrap();
    let error: ErrorResponse = refused.control().unwrap();
    assert_eq!((refused.correlation_id, error.code), (1, ErrorCode::Unauthenticated), "{}", error.message);
    assert!(closed(Frame::read(&mut socket, u32::MAX).await), "the connection is closed after the refusal");

    // A frame announcing 1 MiB: refused from its length alone (no body is
    // ever sent here), and the connection closed.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    let mut head = Vec::new();
    head.extend_from_slice(&(1u32 << 20).to_le_bytes());
    head.extend_from_slice(&fluvio_client::protocol::PROTOCOL_VERSION.to_le_bytes());
    head.extend_from_slice(&(ApiKind::Authenticate as u16).to_le_bytes());
    head.extend_from_slice(&2u32.to_le_bytes());
    socket.write_all(&head).await.unwrap();
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), Frame::read(&mut socket, u32::MAX))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let error: ErrorResponse = refused.control().unwrap();
    assert_eq!(error.code, ErrorCode::BadFrame, "{}", error.message);
    assert!(error.message.contains("authenticate first"), "{}", error.message);
    assert!(closed(Frame::read(&mut socket, u32::MAX).await), "the connection is closed");

    // Silence: closed once the login deadline (1 s here) passes.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut byte))
        .await
        .expect("closed well before the idle timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "the server closed the connection: {read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "not before the deadline");

    // Authenticated in time: the deadline and the frame cap no longer apply.
    let mut socket = TcpStream::connect(&server.addr).await.unwrap();
    Frame::request(3, AuthenticateRequest { token: APP_TOKEN.into() }).write(&mut socket).await.unwrap();
    let answer = Frame::read(&mut socket, u32::MAX).await.unwrap();
    assert_eq!(answer.kind, ApiKind::Authenticate as u16 | RESPONSE_BIT);
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    Frame::request(4, ListTopicsRequest).write(&mut socket).await.unwrap();
    let listed = Frame::read(&mut socket, u32::MAX).await.unwrap();
    assert_eq!(listed.kind, ApiKind::ListTopics as u16 | RESPONSE_BIT);
    listed.into_message::<ListTopicsResponse>().unwrap();
}

/// Opens `count` sockets to `addr` that never say a word.
async fn idle_sockets(addr: &str, count: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        sockets.push(TcpStream::connect(addr).await.unwrap());
    }
    sockets
}

/// How many of `sockets` the server has closed (read end of file, or
/// reset), each given until `deadline`.
async fn closed_by_server(sockets: &mut [TcpStream], deadline: std::time::Duration) -> usize {
    use tokio::io::AsyncReadExt;
    let until = tokio::time::Instant::now() + deadline;
    let mut closed = 0;
    for socket in sockets {
        let mut byte = [0u8; 1];
        if let Ok(read) = tokio::time::timeout_at(until, socket.read(&mut byte)).await
            && matches!(read, Ok(0) | Err(_))
        {
            closed += 1;
        }
    }
    closed
}

/// A flood of connections that never log in (idle, slow, and still
/// arriving) neither locks out a client with a token nor stops one that is
/// logged in already: they count against a budget of their own, apart from
/// `--max-connections`, and the oldest make room for newcomers. Over TLS
/// too, where a handshake that never finishes counts the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_before_login_locks_out_no_client_with_a_token() {
    use tokio::io::AsyncWriteExt;
    let dir = data_dir("security-flood-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let access = access_file(&dir);
    let ca = TestCa::new(&dir, "flood");
    let (cert, key) = ca.server("server");
    let limits = ["--max-connections", "8", "--max-pre-login-connections", "64", "--max-pre-login-per-address", "32"];
    let plain_args: Vec<&str> = [&["--access", access.to_str().unwrap()][..], &limits[..]].concat();
    let tls_args: Vec<&str> = [
        &[
            "--access",
            access.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ][..],
        &limits[..],
    ]
    .concat();
    for (name, args, tls) in
        [("security-flood", plain_args, None), ("security-flood-tls", tls_args, Some(TlsConfig::with_ca(ca.cert())))]
    {
        let server = ServerProcess::start(&data_dir(name), &args);
        let client = |token: &'static str| {
            let mut config = FluvioClusterConfig::new(&server.addr).with_token(token);
            if let Some(tls) = &tls {
                config = config.with_tls(tls.clone());
            }
            async move { Fluvio::connect_with_config(&config).await }
        };
        let admin = client(ADMIN_TOKEN).await.unwrap();
        admin.create_topic("orders", 1).await.unwrap();
        let before = client(APP_TOKEN).await.unwrap();

        // Three hundred idle sockets, ten that send an Authenticate a byte
        // at a time, and more arriving all along.
        let mut idle = idle_sockets(&server.addr, 300).await;
        let request = Frame::request(1, AuthenticateRequest { token: APP_TOKEN.into() });
        let mut slow_bytes = Vec::new();
        request.write(&mut slow_bytes).await.unwrap();
        let slow: Vec<_> = (0..10)
            .map(|_| {
                let (addr, bytes) = (server.addr.clone(), slow_bytes.clone());
                tokio::spawn(async move {
                    let mut socket = TcpStream::connect(&addr).await.unwrap();
                    for byte in bytes {
                        if socket.write_all(&[byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                })
            })
            .collect();
        let arriving = {
            let addr = server.addr.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                for _ in 0..300 {
                    held.push(TcpStream::connect(&addr).await.unwrap());
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                held
            })
        };

        // A client with a token connects and works, as many times as the
        // authenticated limit allows, and the one logged in before goes on.
        for round in 0..5 {
            let after = tokio::time::timeout(std::time::Duration::from_secs(20), client(APP_TOKEN))
                .await
                .expect("connected within 20 s")
                .unwrap_or_else(|error| panic!("{name}: round {round}: {error}"));
            produce(&after, "orders", &[&format!("after {round}")]).await;
        }
        produce(&before, "orders", &["before"]).await;
        let expected: Vec<String> =
            (0..5).map(|round| format!("after {round}")).chain(["before".to_string()]).collect();
        assert_eq!(values(&read_all(&before, "orders", from_beginning()).await), expected, "{name}");

        // The idle sockets were closed to make room, all but the newest few.
        let arrived = arriving.await.unwrap();
        let closed = closed_by_server(&mut idle, std::time::Duration::from_secs(5)).await;
        assert!(closed >= 300 - 32, "{name}: only {closed} of 300 idle sockets were closed");
        for task in slow {
            task.abort();
        }
        drop(arrived);
    }
}

/// One principal that holds its quota of SmartModule stages (each reserves
/// memory all share) is refused more, naming the quota, while another
/// principal still streams through a chain; closing a stream gives the
/// quota back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_at_its_stage_quota_leaves_room_for_the_others() {
    let dir = data_dir("security-quota-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let access = access_file(&dir);
    let server = ServerProcess::start(
        &data_dir("security-quota"),
        &["--access", access.to_str().unwrap(), "--max-smartmodule-stages-per-principal", "2"],
    );
    let connect = |token: &'static str| {
        let config = FluvioClusterConfig::new(&server.addr).with_token(token);
        async move { Fluvio::connect_with_config(&config).await.unwrap() }
    };
    let admin = connect(ADMIN_TOKEN).await;
    admin.create_topic("orders", 1).await.unwrap();
    produce(&admin, "orders", &["alpha", "plum"]).await;
    let app = connect(APP_TOKEN).await;
    let filter = || fluvio_client::SmartModuleInvocation::adhoc("my-filter", common::wasm("my-filter"));
    let continuous = || ConsumerConfig { continuous: true, smartmodules: vec![filter()], ..from_beginning() };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = app.consumer_stream("orders", continuous()).await.unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().value(), b"alpha");
        held.push(stream);
    }
    // The third stage is past the app's quota.
    let error = match app.consumer_stream("orders", continuous()).await {
        Err(error) => error,
        Ok(mut stream) => tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .expect("an item")
            .expect_err("refused"),
    };
    assert_eq!(code(&error), Some(ErrorCode::LimitReached), "{error}");
    assert!(error.to_string().contains("--max-smartmodule-stages-per-principal"), "{error}");
    // Another principal streams through a chain meanwhile.
    let other = read_all(&admin, "orders", ConsumerConfig { smartmodules: vec![filter()], ..from_beginning() }).await;
    assert_eq!(values(&other), ["alpha"]);
    // A stream closed gives its stage back.
    held.pop();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let again = read_all(&app, "orders", ConsumerConfig { smartmodules: vec![filter()], ..from_beginning() }).await;
    assert_eq!(values(&again), ["alpha"]);
}

/// Consumer ids are counted: one principal that made its quota of ids is
/// refused a new one (naming the quota) while its known ids still commit
/// and another principal makes ids; the server-wide cap holds for all; a
/// deleted id gives its place back; owners survive a restart; and the
/// listing comes in pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_ids_are_counted_per_principal_and_in_all() {
    use fluvio_client::protocol::requests::{ConsumerOffsetKey, ListConsumersPageRequest};

    let dir = data_dir("security-consumer-ids-pki");
    std::fs::create_dir_all(&dir).unwrap();
    let access = access_file(&dir);
    let data = data_dir("security-consumer-ids");
    let args =
        ["--access", access.to_str().unwrap(), "--max-consumer-ids-per-principal", "3", "--max-consumer-ids", "5"];
    let mut server = ServerProcess::start(&data, &args);
    let connect = |addr: String, token: &'static str| async move {
        Fluvio::connect_with_config(&FluvioClusterConfig::new(&addr).with_token(token)).await.unwrap()
    };
    let admin = connect(server.addr.clone(), ADMIN_TOKEN).await;
    admin.create_topic("orders", 1).await.unwrap();
    produce(&admin, "orders", &["a", "b"]).await;
    let app = connect(server.addr.clone(), APP_TOKEN).await;
    for id in ["c-0", "c-1", "c-2"] {
        app.commit_offset(id, "orders", 0, 1).await.unwrap();
    }
    let error = app.commit_offset("c-3", "orders", 0, 1).await.expect_err("past the app's quota");
    assert_eq!(code(&error), Some(ErrorCode::LimitReached), "{error}");
    assert!(error.to_string().contains("--max-consumer-ids-per-principal"), "{error}");
    // Its known ids still move on.
    app.commit_offset("c-1", "orders", 0, 2).await.unwrap();
    assert_eq!(app.fetch_offset("c-1", "orders", 0).await.unwrap(), Some(2));
    // Another principal makes ids up to the server's cap of 5.
    admin.commit_offset("ops-0", "orders", 0, 0).await.unwrap();
    admin.commit_offset("ops-1", "orders", 0, 0).await.unwrap();
    let error = admin.commit_offset("ops-2", "orders", 0, 0).await.expect_err("past the server's cap");
    assert_eq!(code(&error), Some(ErrorCode::LimitReached), "{error}");
    assert!(error.to_string().contains("--max-consumer-ids"), "{error}");
    // A deleted id gives its place back, to its owner's quota too.
    admin.delete_consumer("c-0", None).await.unwrap();
    app.commit_offset("c-3", "orders", 0, 1).await.unwrap();

    // Pages of two, in order, add up to the whole listing.
    let whole = admin.list_consumers().await.unwrap();
    let ids: Vec<&str> = whole.iter().map(|offset| offset.consumer.as_str()).collect();
    assert_eq!(ids, ["c-1", "c-2", "c-3", "ops-0", "ops-1"]);
    let mut paged = Vec::new();
    loop {
        let after = paged.last().map(ConsumerOffsetKey::of);
        let page = admin.send(ListConsumersPageRequest { after, limit: 2 }).await.unwrap();
        assert!(page.offsets.len() <= 2);
        paged.extend(page.offsets);
        if !page.more {
            break;
        }
    }
    assert_eq!(paged, whole);

    // Owners are stored: after a restart the app still has its three (with
    // room left on the server, so only its quota can refuse).
    admin.delete_consumer("ops-1", None).await.unwrap();
    drop((app, admin));
    server.kill9();
    let server = ServerProcess::start(&data, &args);
    let app = connect(server.addr.clone(), APP_TOKEN).await;
    let error = app.commit_offset("c-4", "orders", 0, 1).await.expect_err("still past the app's quota");
    assert!(error.to_string().contains("--max-consumer-ids-per-principal"), "{error}");
    app.commit_offset("c-2", "orders", 0, 2).await.unwrap();
}
