//! `fluvio-server`: runs the streaming server in the foreground.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use fluvio_protocol::units;
use fluvio_server::connection::consumer_ids::ConsumerIdLimits;
use fluvio_server::connection::quota::PrincipalQuotas;
use fluvio_server::security::{SecurityConfig, TlsFiles};
use fluvio_server::storage::jetstream::JetStreamConfig;
use fluvio_server::{ConnectionLimits, FlushPolicy, Server, ServerConfig};
use fluvio_smartengine::{Limits, Metering};

/// The streaming server: durable topics, a SmartModule registry, and
/// SmartModules run for consumers.
#[derive(Debug, Parser)]
#[command(name = "fluvio-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = fluvio_protocol::DEFAULT_ADDR, env = "FLUVIO_SERVER_ADDR")]
    addr: SocketAddr,
    /// Directory for topics, registered SmartModules and compiled code.
    #[arg(long, env = "FLUVIO_DATA_DIR")]
    data_dir: PathBuf,
    /// When appended records are synced: every-batch, interval:MILLISECONDS or os.
    #[arg(long, default_value = "every-batch")]
    flush: FlushPolicy,
    /// Largest request frame accepted, in bytes (or 64MiB, 1GB...).
    #[arg(long, default_value_t = fluvio_protocol::DEFAULT_MAX_FRAME_BYTES, value_parser = units::parse_size_within::<u32>)]
    max_frame_bytes: u32,
    /// Size at which a partition starts a new segment, in bytes (or 256MiB...).
    #[arg(long, default_value_t = 256 << 20, value_parser = units::parse_size)]
    segment_bytes: u64,
    /// Memory cap of every SmartModule, in bytes (or 16MiB...).
    #[arg(long, default_value_t = Limits::DEFAULT_MEMORY_BYTES, value_parser = units::parse_size)]
    smartmodule_memory_bytes: u64,
    /// CPU cap of every SmartModule per batch, in fuel units.
    #[arg(long, default_value_t = Limits::DEFAULT_FUEL_PER_BATCH)]
    smartmodule_fuel: u64,
    /// Wall-clock cap of every call into a SmartModule, in milliseconds:
    /// stops a module that runs too long however much fuel it has left.
    #[arg(long, default_value_t = Limits::DEFAULT_CALL_TIME.as_millis() as u64)]
    smartmodule_call_ms: u64,
    /// How SmartModules are held to their CPU cap: `fuel` counts every
    /// instruction against --smartmodule-fuel (the same stop on every
    /// machine); `deadline` counts nothing and stops a module at
    /// --smartmodule-call-ms alone, about 10% faster.
    #[arg(long, default_value = "fuel")]
    smartmodule_metering: Metering,
    /// Bytes of compiled SmartModule code kept cached, in memory and on disk
    /// (or 512MiB...).
    #[arg(long, default_value_t = Limits::DEFAULT_CACHE_BYTES, value_parser = units::parse_size)]
    smartmodule_cache_bytes: u64,
    /// SmartModules compiled at the same time (default: the number of cores).
    #[arg(long)]
    smartmodule_compilations: Option<usize>,
    /// Longest one SmartModule may take to compile, in seconds; a module
    /// sent that takes longer is refused (the compile finishes in the
    /// background, holding one of the compile places).
    #[arg(long, default_value_t = Limits::DEFAULT_COMPILE_TIME.as_secs())]
    smartmodule_compile_secs: u64,
    /// Connections served at once (with --access: authenticated ones).
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Connections that have not logged in yet (or are in their TLS
    /// handshake), counted apart from --max-connections; past it, the
    /// oldest of them is closed to make room.
    #[arg(long, default_value_t = ConnectionLimits::default().max_pre_login_connections)]
    max_pre_login_connections: usize,
    /// Connections before login from one address; past it, that address's
    /// oldest is closed to make room.
    #[arg(long, default_value_t = ConnectionLimits::default().max_pre_login_per_address)]
    max_pre_login_per_address: usize,
    /// Hosts and networks the http and mqtt connectors may reach,
    /// comma-separated (`api.example.com,*.example.com,10.0.0.0/8`); any
    /// when not given.
    #[arg(long, value_name = "LIST")]
    connector_egress: Option<String>,
    /// With --access: authenticated connections one principal may hold.
    #[arg(long, default_value_t = PrincipalQuotas::default().connections)]
    max_connections_per_principal: usize,
    /// With --access: streams one principal may have open, over all its
    /// connections.
    #[arg(long, default_value_t = PrincipalQuotas::default().streams)]
    max_streams_per_principal: usize,
    /// With --access: SmartModules one principal's streams may run at once
    /// (each reserves --smartmodule-memory-bytes of --smartmodule-memory-total).
    #[arg(long, default_value_t = PrincipalQuotas::default().smartmodule_stages)]
    max_smartmodule_stages_per_principal: usize,
    /// With --access: chains with ad hoc SmartModules one principal may have
    /// compiling at once; more wait their turn.
    #[arg(long, default_value_t = PrincipalQuotas::default().compilations)]
    max_compilations_per_principal: usize,
    /// Consumer ids that may have stored offsets on the server; committing
    /// under a new id beyond it is refused (delete unused ids to make room).
    #[arg(long, default_value_t = ConsumerIdLimits::default().total)]
    max_consumer_ids: usize,
    /// With --access: consumer ids one principal may make (an id belongs to
    /// the principal whose commit created it).
    #[arg(long, default_value_t = ConsumerIdLimits::default().per_principal)]
    max_consumer_ids_per_principal: usize,
    /// Streams (consumers) open at once on one connection.
    #[arg(long, default_value_t = ConnectionLimits::default().max_streams_per_connection)]
    max_streams_per_connection: usize,
    /// SmartModules in one consumer's chain.
    #[arg(long, default_value_t = ConnectionLimits::default().max_chain_length)]
    max_chain_length: usize,
    /// Memory all running SmartModules may use together, in bytes; each
    /// module of a running chain reserves --smartmodule-memory-bytes.
    #[arg(long, default_value_t = ConnectionLimits::default().smartmodule_memory_total, value_parser = units::parse_size)]
    smartmodule_memory_total: u64,
    /// Bytes of responses queued for one slow client (or 8MiB...).
    #[arg(long, default_value_t = ConnectionLimits::default().max_queued_bytes, value_parser = units::parse_size_within::<usize>)]
    max_queued_bytes: usize,
    /// Seconds a write to a client that does not read may block before its
    /// connection is closed.
    #[arg(long, default_value_t = ConnectionLimits::default().write_timeout.as_secs())]
    write_timeout_secs: u64,
    /// Seconds a connection with no open stream may stay silent before it is
    /// closed.
    #[arg(long, default_value_t = ConnectionLimits::default().idle_timeout.as_secs())]
    idle_timeout_secs: u64,
    /// Seconds a connection to a server with an access file has to
    /// authenticate before it is closed.
    #[arg(long, default_value_t = ConnectionLimits::default().login_timeout.as_secs())]
    login_timeout_secs: u64,
    /// Bytes all compressed batches being checked or read may inflate to
    /// at once, each counted at the most it may inflate to (256MiB...); more
    /// wait. At least 256MiB, the largest batch.
    #[arg(long, default_value_t = ConnectionLimits::default().inflate_budget, value_parser = units::parse_size)]
    inflate_budget_bytes: u64,
    /// The `fluvio-connector` program connectors run with (default: next
    /// to this program, else on PATH).
    #[arg(long, env = "FLUVIO_CONNECTOR_BIN", value_name = "PROGRAM")]
    connector_bin: Option<PathBuf>,
    /// Keep topics and SmartModules in this NATS JetStream cluster
    /// (comma-separated client URLs), so that several servers serve the
    /// same topics; the data directory then holds only caches and connectors.
    #[arg(long, env = "FLUVIO_JETSTREAM", value_name = "URLS")]
    jetstream: Option<String>,
    /// How long a JetStream cluster remembers a producer's batch to drop it
    /// when sent again, in seconds.
    #[arg(long, default_value_t = 120, requires = "jetstream")]
    duplicate_window_secs: u64,
    /// Serve TLS with this certificate chain (PEM, leaf first).
    #[arg(long, env = "FLUVIO_SERVER_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FLUVIO_SERVER_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept client certificates signed by these authorities (PEM); a
    /// certificate whose common name is a principal's name authenticates
    /// the connection as that principal.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Require every connection to authenticate as a principal of this
    /// file (TOML: name, role admin or client, token, topics); see
    /// docs/security.md.
    #[arg(long, env = "FLUVIO_SERVER_ACCESS", value_name = "FILE")]
    access: Option<PathBuf>,
    /// This server's id in the cluster (Fluvio's SPU id), unique among the
    /// servers sharing a JetStream cluster. Default: 0 on a local log; on
    /// JetStream, a number derived from --addr.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    id: Option<i32>,
    /// Allow plain TCP on an address beyond loopback (refused by default:
    /// anyone on the network could read and change every topic).
    #[arg(long)]
    insecure: bool,
    /// Serve HTTP here: `/metrics` for Prometheus. Off when not given;
    /// loopback only unless the server serves TLS (then HTTPS) or
    /// --insecure is given.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// With --access: serve `/metrics` without a token (every other page
    /// still needs an admin's).
    #[arg(long, requires = "http")]
    metrics_public: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    raise_open_file_limit();
    let config = ServerConfig {
        addr: args.addr,
        data_dir: args.data_dir,
        max_frame_bytes: args.max_frame_bytes,
        flush: args.flush,
        segment_bytes: args.segment_bytes,
        limits: Limits {
            memory_bytes: args.smartmodule_memory_bytes,
            fuel_per_batch: args.smartmodule_fuel,
            call_time: std::time::Duration::from_millis(args.smartmodule_call_ms),
            cache_bytes: args.smartmodule_cache_bytes,
            concurrent_compilations: args
                .smartmodule_compilations
                .unwrap_or_else(|| Limits::default().concurrent_compilations),
            compile_time: std::time::Duration::from_secs(args.smartmodule_compile_secs),
            metering: args.smartmodule_metering,
            ..Limits::default()
        },
        connection_limits: ConnectionLimits {
            max_connections: args.max_connections,
            max_pre_login_connections: args.max_pre_login_connections,
            max_pre_login_per_address: args.max_pre_login_per_address,
            max_streams_per_connection: args.max_streams_per_connection,
            max_chain_length: args.max_chain_length,
            smartmodule_memory_total: args.smartmodule_memory_total,
            max_queued_bytes: args.max_queued_bytes,
            write_timeout: std::time::Duration::from_secs(args.write_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs),
            login_timeout: std::time::Duration::from_secs(args.login_timeout_secs),
            inflate_budget: args.inflate_budget_bytes,
            per_principal: PrincipalQuotas {
                connections: args.max_connections_per_principal,
                streams: args.max_streams_per_principal,
                smartmodule_stages: args.max_smartmodule_stages_per_principal,
                compilations: args.max_compilations_per_principal,
            },
            consumer_ids: ConsumerIdLimits {
                total: args.max_consumer_ids,
                per_principal: args.max_consumer_ids_per_principal,
            },
        },
        connector_program: args.connector_bin.unwrap_or_else(fluvio_server::default_connector_program),
        connector_egress: args.connector_egress,
        jetstream: args.jetstream.as_deref().map(|urls| JetStreamConfig {
            duplicate_window: std::time::Duration::from_secs(args.duplicate_window_secs),
            ..JetStreamConfig::new(urls)
        }),
        security: SecurityConfig {
            tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| TlsFiles {
                cert,
                key,
                client_ca: args.tls_client_ca,
            }),
            access_file: args.access,
            insecure: args.insecure,
        },
        server_id: args.id,
        http: args.http.map(|addr| fluvio_server::http::HttpConfig { addr, metrics_public: args.metrics_public }),
    };
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let context = server.context();
    // Tests and `fluvio cluster start` read this line to learn the address.
    println!("fluvio-server listening on {}", server.local_addr());
    if let Some(http) = server.http_addr() {
        // Whoever read the line above may have stopped reading: a closed
        // pipe must not stop the server.
        let _ = writeln!(std::io::stdout(), "fluvio-server serving HTTP on {http} (metrics at /metrics)");
    }
    let _ = std::io::stdout().flush();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = server.run() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    // Connectors finish their work in hand and start again with the server.
    context.connectors.stop_all().await;
    Server::sync_all(&context).await;
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

/// Raises this process's soft open-file limit to its hard limit: a server
/// holds a file per connection and three per partition, and the usual soft
/// limit of 1024 is below what its default limits need.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            tracing::debug!(from = soft, to = limit.rlim_max, "raised the open-file limit");
        }
    }
}
