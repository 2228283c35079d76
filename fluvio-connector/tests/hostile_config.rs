//! Property tests of the connector config parser on damaged configs: the
//! configs of every built-in connector type, changed at random the way a
//! hand edit or a bad template does (a character dropped, doubled or
//! replaced by one YAML gives meaning to, lines swapped or cut), are read
//! or refused with an error naming the file; never a panic.

use std::path::Path;

use dev_support::damage::Lcg;
use fluvio_connector::config::{ConnectorConfig, Secrets};

const CONFIGS: [&str; 3] = [
    "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: my-sql-sink\n  type: sql-sink\n  topic: sensors\n  consumer:\n    id: my-sql-sink\n    partition: 0\n    offset: { strategy: auto, start: beginning }\n    max-bytes: 1MiB\n  secrets:\n    - name: DB_PASSWORD\nsql:\n  url: postgres://postgres:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/test\n  table: readings\ntransforms:\n  - uses: my-filter\n    with: { key: value, n: 3 }\n",
    "apiVersion: 0.2.0\nmeta:\n  version: 0.1.0\n  name: m\n  type: mqtt-source\n  topic: { name: t }\n  producer:\n    linger: 100ms\n    batch-size: 64KiB\n    compression: gzip\nmqtt:\n  url: mqtt://127.0.0.1:1883\n  topic: sensors/#\n",
    "apiVersion: 0.1.0\nmeta:\n  version: 0.1.0\n  name: h\n  type: http-source\n  topic: events\nhttp:\n  endpoint: http://127.0.0.1:8080/events\n  interval: 10s\n  headers:\n    - \"Authorization: Bearer x\"\n",
];

const MEANINGFUL: &[u8] = b" :-{}[],#&*!|>'\"%@`\n\t$0123456789.";

fn damage_text(random: &mut Lcg, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..random.below(4) + 1 {
        if bytes.is_empty() {
            break;
        }
        let at = random.below(bytes.len() as u64) as usize;
        match random.below(5) {
            0 => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, bytes[at]),
            2 => bytes[at] = MEANINGFUL[random.below(MEANINGFUL.len() as u64) as usize],
            3 => bytes.truncate(at),
            _ => {
                let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
                let (a, b) = (random.below(lines.len() as u64) as usize, random.below(lines.len() as u64) as usize);
                lines.swap(a, b);
                bytes = lines.join(&b'\n');
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn damaged_configs_are_read_or_refused_naming_the_file_never_a_panic() {
    let path = Path::new("damaged.yaml");
    let secrets = Secrets::parse("DB_PASSWORD=secret\n", Path::new("secrets.env")).unwrap();
    for config in CONFIGS {
        ConnectorConfig::parse(config, path, &secrets).unwrap_or_else(|e| panic!("an undamaged config: {e}"));
    }
    let mut random = Lcg(0xc0ff_ee00_1234_5678);
    let (mut accepted, mut refused) = (0u32, 0u32);
    for round in 0..20_000u32 {
        let text = damage_text(&mut random, CONFIGS[round as usize % CONFIGS.len()]);
        match ConnectorConfig::parse(&text, path, &secrets) {
            Ok(_) => accepted += 1,
            Err(error) => {
                refused += 1;
                assert!(error.to_string().contains("damaged.yaml"), "round {round}: {error}");
            }
        }
    }
    assert!(accepted > 1_000 && refused > 1_000, "accepted {accepted}, refused {refused}");
}
