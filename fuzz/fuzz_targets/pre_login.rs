//! Whatever a connection sends before it logs in, to a server that requires
//! credentials: the server never panics, answers nothing but errors and
//! `Authenticate` (the token is not one the fuzzer can find), and reads no
//! frame larger than the pre-login cap. The server runs in this process,
//! once, and each input is one connection over an in-memory pipe.
#![no_main]

use std::sync::{Arc, OnceLock};

use fluvio_protocol::{ApiKind, Frame, RESPONSE_BIT};
use fluvio_server::{Server, ServerConfig, ServerContext};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    context: Arc<ServerContext>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fluvio-fuzz-pre-login-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let access = dir.join("access.toml");
        // A token of 48 random-looking characters: never guessed.
        std::fs::write(
            &access,
            "[[principal]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"f3a9c1d7e5b2a8f4c6e0d9b7a5c3e1f2a4b6c8d0e2f4a6b8\"\n",
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut config = ServerConfig::new(&dir.join("data"));
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.security.access_file = Some(access);
        let server = runtime.block_on(Server::bind(config)).expect("the server starts");
        Fixture { context: server.context(), runtime }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let context = Arc::clone(&fixture.context);
    let answers = fixture.runtime.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(64 << 10);
        let (reader, writer) = tokio::io::split(server);
        let serving = tokio::spawn(fluvio_server::connection::serve(reader, writer, None, None, context));
        let (mut from_server, mut to_server) = tokio::io::split(client);
        // The server may close before it has read everything: that is fine.
        let _ = to_server.write_all(data).await;
        let _ = to_server.shutdown().await;
        let mut answers = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), from_server.read_to_end(&mut answers)).await;
        serving.await.expect("the connection's task does not panic");
        answers
    });
    let mut rest = answers.as_slice();
    while !rest.is_empty() {
        let prefix: [u8; 4] = rest[..4].try_into().expect("whole frames");
        let len = Frame::body_len(prefix, u32::MAX).expect("a frame length");
        let frame = Frame::from_body(rest[4..4 + len].to_vec()).expect("a frame");
        let allowed = [ApiKind::Error as u16 | RESPONSE_BIT, ApiKind::Authenticate as u16 | RESPONSE_BIT];
        assert!(allowed.contains(&frame.kind), "answered kind {:#x} before login", frame.kind);
        rest = &rest[4 + len..];
    }
});
