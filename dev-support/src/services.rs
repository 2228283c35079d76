//! Throwaway instances of the real services tests talk to: PostgreSQL, a
//! Mosquitto MQTT broker, a NATS JetStream cluster and Prometheus, each on
//! free loopback ports with its files in a temporary directory, stopped when dropped.
//!
//! When `$DATABASE_URL` or `$MQTT_URL` is set, the tests use that server
//! instead, and nothing is started. A missing program is a test failure
//! that says how to install it; no test is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, on 127.0.0.1, for a service a test
/// starts.
///
/// The port comes from below the kernel's ephemeral range. A port from
/// `bind(0)` is free only until it is released: before the service binds
/// it, the kernel may give it to another `bind(0)` or to an outgoing
/// connection, both common while other tests run clusters, and the service
/// then fails to start while the test talks to whatever holds the port (a
/// test failed that way). The kernel never hands out ports below the range
/// by itself, and within this process each is handed out once; each
/// process starts at a place of its own.
pub fn free_port() -> u16 {
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // 12,000 ports under the range, never the well-known ones.
    let low = ephemeral_start.saturating_sub(12_000).max(1024);
    let span = ephemeral_start.saturating_sub(low);
    if span < 1000 {
        return TcpListener::bind("127.0.0.1:0")
            .expect("bind an ephemeral port")
            .local_addr()
            .expect("local addr")
            .port();
    }
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {}", low + span)
}

fn temp_dir(what: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("fluvio-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Finds a program on `PATH`, or in the extra directories given.
fn find_program(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra.iter().cloned()).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Debian installs the server's programs out of `PATH`.
fn postgres_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// Runs a PostgreSQL program, as the `postgres` system user when we are
/// root (`initdb` refuses to run as root).
fn postgres_command(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn wait_for_port(port: u16, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on 127.0.0.1:{port} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A PostgreSQL server: a throwaway one, or `$DATABASE_URL`.
pub struct Postgres {
    url: String,
    owned: Option<(PathBuf, PathBuf)>,
    /// On a shared server: the schema this instance's tables live in.
    schema: Option<String>,
}

impl Postgres {
    /// Starts a server in a temporary directory (`initdb -A trust`,
    /// `pg_ctl start`) on a free loopback port, or uses `$DATABASE_URL`.
    pub fn start() -> Postgres {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            // A schema of its own, first on the search path (for psql and
            // for the connectors alike), so that tests can run in parallel
            // and again on one shared server.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let schema = format!("fluvio_test_{}_{n}", std::process::id());
            let shared = Postgres { url: url.clone(), owned: None, schema: None };
            shared.psql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"));
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{separator}options=-csearch_path%3D{schema}");
            return Postgres { url, owned: None, schema: Some(schema) };
        }
        Postgres::start_owned(None)
    }

    /// Starts a throwaway server (never `$DATABASE_URL`) that also serves
    /// TLS with this certificate and key (PEM).
    pub fn start_with_tls(cert: &Path, key: &Path) -> Postgres {
        Postgres::start_owned(Some((cert, key)))
    }

    fn start_owned(tls: Option<(&Path, &Path)>) -> Postgres {
        let dirs = postgres_dirs();
        let initdb = find_program("initdb", &dirs)
            .expect("PostgreSQL's initdb is not installed; run scripts/test.sh, or `apt-get install -y postgresql`");
        let pg_ctl = find_program("pg_ctl", &dirs).expect("PostgreSQL's pg_ctl is not installed");
        let dir = temp_dir("postgres");
        let data = dir.join("data");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().expect("chown");
            assert!(status.success(), "cannot hand {} to the postgres user", dir.display());
        }
        let output = postgres_command(&initdb)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(output.status.success(), "initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        let port = free_port();
        let mut options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=on -c max_connections=50", dir.display());
        if let Some((cert, key)) = tls {
            // The server reads them as its own user, and wants the key
            // readable by nobody else.
            let (own_cert, own_key) = (dir.join("server.pem"), dir.join("server.key"));
            std::fs::copy(cert, &own_cert).expect("copy the certificate");
            std::fs::copy(key, &own_key).expect("copy the key");
            std::fs::set_permissions(&own_key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
            if is_root() {
                let status = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&own_cert)
                    .arg(&own_key)
                    .status()
                    .expect("chown");
                assert!(status.success(), "cannot hand the key to the postgres user");
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                own_cert.display(),
                own_key.display()
            ));
        }
        let status = postgres_command(&pg_ctl)
            .args(["-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl start failed; see {}", dir.join("server.log").display());
        wait_for_port(port, "PostgreSQL", Duration::from_secs(30));
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            owned: Some((pg_ctl, data)),
            schema: None,
        }
    }

    /// The URL to connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs SQL with `psql` and returns what it printed (unaligned, tuples
    /// only), failing the test on an error.
    pub fn psql(&self, sql: &str) -> String {
        let psql = find_program("psql", &postgres_dirs()).expect("psql is not installed");
        let output = Command::new(psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &self.url, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(output.status.success(), "psql failed on {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(schema) = &self.schema {
            let psql = find_program("psql", &postgres_dirs()).expect("psql is not installed");
            let _ = Command::new(psql)
                .args(["-X", "-q", "-d", &self.url, "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
                .output();
        }
        if let Some((pg_ctl, data)) = &self.owned {
            let _ = postgres_command(pg_ctl)
                .args(["-D"])
                .arg(data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Some(dir) = data.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A Mosquitto MQTT broker: a throwaway one, or `$MQTT_URL`.
pub struct Mosquitto {
    url: String,
    child: Option<(std::process::Child, PathBuf)>,
}

impl Mosquitto {
    /// Starts `mosquitto` on a free loopback port, or uses `$MQTT_URL`.
    pub fn start() -> Mosquitto {
        if let Ok(url) = std::env::var("MQTT_URL") {
            return Mosquitto { url, child: None };
        }
        let program = find_program("mosquitto", &[PathBuf::from("/usr/sbin")])
            .expect("mosquitto is not installed; run scripts/test.sh, or `apt-get install -y mosquitto`");
        let dir = temp_dir("mosquitto");
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nmax_queued_messages 1000000\n"),
        )
        .expect("write the broker's config");
        let child = Command::new(program)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        wait_for_port(port, "mosquitto", Duration::from_secs(30));
        Mosquitto { url: format!("mqtt://127.0.0.1:{port}"), child: Some((child, dir)) }
    }

    /// The broker's URL, `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The broker's host and port.
    pub fn host_port(&self) -> (String, u16) {
        let rest = self.url.trim_start_matches("mqtt://");
        let (host, port) = rest.rsplit_once(':').expect("the URL has a port");
        (host.to_string(), port.trim_end_matches('/').parse().expect("a numeric port"))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some((child, dir)) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `GET path` over HTTP on loopback, with extra header lines
/// (`"Authorization: Bearer T"`): the status code and the body. Bounded
/// in time: 10 s to connect and to read.
pub fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    http_request(addr, "GET", path, headers, None)
}

/// A request over HTTP/1.1 (one per connection) on loopback with an optional JSON body: the
/// status code and the body (de-chunked). Bounded in time: 10 s to
/// connect, and 60 s to read (a browser's driver may take that long).
pub fn http_request(addr: &str, method: &str, path: &str, headers: &[&str], json: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().expect("an address such as 127.0.0.1:PORT");
    let mut connection =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect to an HTTP server");
    connection.set_read_timeout(Some(Duration::from_secs(60))).expect("set a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if let Some(json) = json {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", json.len()));
    }
    request.push_str("\r\n");
    if let Some(json) = json {
        request.push_str(json);
    }
    connection.write_all(request.as_bytes()).expect("send an HTTP request");
    // Read up to the end of the body the headers announce: some servers
    // (chromedriver) keep the connection open after `Connection: close`.
    let mut response = Vec::new();
    let mut buffer = [0u8; 64 << 10];
    loop {
        if let Some(split) = response.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
            let length =
                head.lines().find_map(|line| line.strip_prefix("content-length:")?.trim().parse::<usize>().ok());
            let body = &response[split + 4..];
            let chunked = head.lines().any(|line| line.replace(' ', "") == "transfer-encoding:chunked");
            let complete = match length {
                Some(length) => body.len() >= length,
                None => chunked && body.windows(5).any(|window| window == b"0\r\n\r\n"),
            };
            if complete {
                break;
            }
        }
        let read = connection.read(&mut buffer).expect("read an HTTP response");
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut body = response[split + 4..].to_vec();
    if head.lines().any(|line| line.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked") {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("an HTTP status line");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The data of a chunked body.
fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let Some(end) = chunked.windows(2).position(|window| window == b"\r\n") else { return data };
        let size = std::str::from_utf8(&chunked[..end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size.filter(|&size| size > 0) else { return data };
        let start = end + 2;
        let Some(chunk) = chunked.get(start..start + size) else { return data };
        data.extend_from_slice(chunk);
        chunked = chunked.get(start + size + 2..).unwrap_or_default();
    }
}

/// Percent-encodes `text` for a URL's query string.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A real Prometheus server on a free loopback port that scrapes the given
/// targets every second, with its data in a temporary directory, stopped
/// when dropped.
pub struct Prometheus {
    addr: String,
    child: std::process::Child,
    dir: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` scraping `targets` (`host:port`, path
    /// `/metrics`), with `bearer_token` when given.
    pub fn start(targets: &[&str], bearer_token: Option<&str>) -> Prometheus {
        let program = find_program("prometheus", &[PathBuf::from("/usr/bin")])
            .expect("prometheus is not installed; run scripts/test.sh, or `apt-get install -y prometheus`");
        let dir = temp_dir("prometheus");
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|target| format!("'{target}'")).collect();
        let authorization =
            bearer_token.map(|token| format!("    authorization:\n      credentials: '{token}'\n")).unwrap_or_default();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: fluvio\n{authorization}    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create prometheus.log");
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        wait_for_port(port, "prometheus", Duration::from_secs(60));
        let prometheus = Prometheus { addr: format!("127.0.0.1:{port}"), child, dir };
        // It listens before its storage is open, answering 503 until then.
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&prometheus.addr, "/-/ready", &[]).0 != 200 {
            assert!(Instant::now() < deadline, "prometheus was not ready within 60 s: {}", prometheus.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// Runs an instant PromQL query; the raw JSON answer.
    pub fn query(&self, promql: &str) -> String {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", url_encode(promql)), &[]);
        assert_eq!(status, 200, "query {promql}: {body}");
        body
    }

    /// The scrape targets' state, as the API's raw JSON.
    pub fn targets(&self) -> String {
        http_get(&self.addr, "/api/v1/targets", &[]).1
    }

    /// What Prometheus logged, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A NATS cluster with JetStream on loopback: `nodes` `nats-server`
/// processes joined by cluster routes, each with its own store directory,
/// stopped when dropped. Nodes can be killed with SIGKILL and started again
/// on the same ports and store, as a machine that fails and comes back.
pub struct NatsCluster {
    dir: PathBuf,
    program: PathBuf,
    client_ports: Vec<u16>,
    route_ports: Vec<u16>,
    monitor_ports: Vec<u16>,
    children: Vec<Option<std::process::Child>>,
}

impl NatsCluster {
    /// Starts `nodes` nodes (1 gives a single server, not clustered) and
    /// waits until each accepts connections. JetStream still needs a
    /// moment to elect its leaders: clients retry.
    pub fn start(nodes: usize) -> NatsCluster {
        let program = find_program("nats-server", &[PathBuf::from("/usr/sbin")])
            .expect("nats-server is not installed; run scripts/test.sh, or `apt-get install -y nats-server`");
        let dir = temp_dir("nats");
        let client_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let monitor_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let children = (0..nodes).map(|_| None).collect();
        let mut cluster = NatsCluster { dir, program, client_ports, route_ports, monitor_ports, children };
        for node in 0..nodes {
            cluster.write_config(node);
        }
        for node in 0..nodes {
            cluster.start_node(node);
        }
        for &port in &cluster.client_ports {
            wait_for_port(port, "nats-server", Duration::from_secs(30));
        }
        cluster
    }

    fn config_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("node{node}.conf"))
    }

    fn write_config(&self, node: usize) {
        let store = self.dir.join(format!("store{node}"));
        let mut config = format!(
            "server_name: {}\nlisten: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\nmax_payload: 8MB\n\
             jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\n",
            self.node_name(node),
            self.client_ports[node],
            self.monitor_ports[node],
            store.display()
        );
        if self.client_ports.len() > 1 {
            let routes: Vec<String> =
                self.route_ports.iter().map(|port| format!("nats-route://127.0.0.1:{port}")).collect();
            config.push_str(&format!(
                "cluster {{\n  name: fluvio-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                self.route_ports[node],
                routes.join(", ")
            ));
        }
        std::fs::write(self.config_path(node), config).expect("write a nats-server config");
    }

    fn start_node(&mut self, node: usize) {
        let log = std::fs::File::create(self.dir.join(format!("node{node}.log"))).expect("create a nats-server log");
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(self.config_path(node))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        self.children[node] = Some(child);
    }

    /// Every node's client URL, comma-separated: what `--jetstream` takes.
    pub fn urls(&self) -> String {
        self.client_ports.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect::<Vec<_>>().join(",")
    }

    /// One node's client URL.
    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[node])
    }

    /// How many nodes the cluster has.
    pub fn node_count(&self) -> usize {
        self.client_ports.len()
    }

    /// One node's name in the cluster (`server_name`), as JetStream names
    /// a stream's leader.
    pub fn node_name(&self, node: usize) -> String {
        format!("node{node}")
    }

    /// The body of a GET of `path` (`/connz`, `/jsz`...) on one node's HTTP
    /// monitoring port: what the node itself reports, for tests to check
    /// where traffic went.
    pub fn monitor(&self, node: usize, path: &str) -> String {
        let (status, body) = http_get(&format!("127.0.0.1:{}", self.monitor_ports[node]), path, &[]);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Kills one node with SIGKILL.
    pub fn kill9(&mut self, node: usize) {
        if let Some(mut child) = self.children[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops one node with SIGSTOP: its connections stay open and nothing
    /// answers on them, as with a node that hangs. [`resume`](Self::resume)
    /// wakes it.
    pub fn pause(&self, node: usize) {
        self.signal(node, libc::SIGSTOP);
    }

    /// Wakes a node that [`pause`](Self::pause) stopped.
    pub fn resume(&self, node: usize) {
        self.signal(node, libc::SIGCONT);
    }

    fn signal(&self, node: usize, signal: libc::c_int) {
        let child = self.children[node].as_ref().expect("the node is running");
        let pid = libc::pid_t::try_from(child.id()).expect("a process id fits pid_t");
        // SAFETY: `kill` has no memory effects; the pid is our own child,
        // not yet waited for, so it names no other process.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "signal {signal} to nats-server node {node}: {}", std::io::Error::last_os_error());
    }

    /// Starts a killed node again, on its ports and store.
    pub fn restart(&mut self, node: usize) {
        self.kill9(node);
        self.start_node(node);
        wait_for_port(self.client_ports[node], "nats-server", Duration::from_secs(30));
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..self.children.len() {
            self.kill9(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
