//! Windowed aggregates against PostgreSQL's own `GROUP BY` over the same
//! rows: 5,000,000 records of 100,000 keys in 1-minute tumbling windows,
//! and hopping and session windows against their SQL references. The
//! rows are loaded into a PostgreSQL the test starts, with `COPY`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::module;
use dev_support::services::Postgres;
use fluvio_protocol::BatchBuilder;
use fluvio_protocol::window::parse_window;
use fluvio_smartengine::{ChainBuilder, ChainOutput, SmartEngine};

/// A window as compared: key, start, end, sum.
type Row = (String, i64, i64, i64);

/// `count` records of `keys` keys whose event times rise through `span`
/// ms, each moved back by up to `jitter` ms: `(key, time, value)`.
fn records(count: u64, keys: u64, span: i64, jitter: u64) -> Vec<(String, i64, i64)> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    (0..count)
        .map(|i| {
            let time = span * i as i64 / count as i64 - random(jitter + 1) as i64;
            (format!("k{}", random(keys)), time, random(1_000) as i64)
        })
        .collect()
}

fn rows(output: &ChainOutput, into: &mut Vec<Row>) {
    for record in output.batch.records() {
        let header = |name: &[u8]| -> i64 {
            let (_, value) = record.headers.iter().find(|(n, _)| *n == name).expect("window header");
            std::str::from_utf8(value).unwrap().parse().unwrap()
        };
        into.push((
            String::from_utf8(record.key.unwrap().to_vec()).unwrap(),
            header(b"window-start"),
            header(b"window-end"),
            std::str::from_utf8(record.value).unwrap().parse().unwrap(),
        ));
    }
}

/// Every window `sum-aggregate` emits in `window`, the input ending after
/// the last record.
fn windowed_sums(window: &str, records: &[(String, i64, i64)]) -> Vec<Row> {
    let engine = SmartEngine::new();
    let invocation = module("sum-aggregate").window(parse_window(window).unwrap());
    let mut chain = ChainBuilder::new(&engine).invocation(invocation).build().unwrap();
    let mut out = Vec::new();
    for (index, part) in records.chunks(4_096).enumerate() {
        let base = (index * 4_096) as i64;
        let mut builder = BatchBuilder::new(base, part[0].1);
        for (i, (key, time, value)) in part.iter().enumerate() {
            builder.push(i as u32, *time, Some(key.as_bytes()), value.to_string().as_bytes(), &[]);
        }
        let output = chain.process(&builder.finish()).unwrap();
        assert!(output.failure.is_none() && output.dead_letters.is_empty());
        rows(&output, &mut out);
    }
    rows(&chain.finish(records.len() as i64).unwrap(), &mut out);
    assert_eq!(chain.metrics()[0].1.late, 0, "no record is later than the lateness");
    out.sort();
    out
}

/// Loads the records into a table `readings (k, ts, v)` with `COPY`.
fn load(pg: &Postgres, table: &str, records: &[(String, i64, i64)]) {
    let path = std::env::temp_dir().join(format!("fluvio-windows-{table}-{}.csv", std::process::id()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for (key, time, value) in records {
        writeln!(file, "{key},{time},{value}").unwrap();
    }
    file.flush().unwrap();
    drop(file);
    pg.psql(&format!("CREATE TABLE {table} (k text NOT NULL, ts bigint NOT NULL, v bigint NOT NULL)"));
    pg.psql(&format!("\\copy {table} FROM '{}' WITH (FORMAT csv)", path.display()));
    std::fs::remove_file(&path).unwrap();
}

/// The rows a query prints as `k|start|end|sum`, sorted.
fn query(pg: &Postgres, sql: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = pg
        .psql(sql)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            (fields[0].to_string(), fields[1].parse().unwrap(), fields[2].parse().unwrap(), fields[3].parse().unwrap())
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn windows_equal_postgresqls_group_by_over_the_same_rows() {
    let pg = Postgres::start();

    // 5,000,000 records of 100,000 keys over 10 minutes, event times
    // shuffled within 10 s; 1-minute windows with 30 s of lateness.
    let many = records(5_000_000, 100_000, 600_000, 10_000);
    load(&pg, "readings", &many);
    let expected = query(
        &pg,
        "SELECT k, w, w + 60000, sum(v) FROM (SELECT k, v, floor(ts / 60000.0)::bigint * 60000 AS w FROM readings) t GROUP BY k, w",
    );
    let got = windowed_sums("tumbling=1m,lateness=30s", &many);
    assert!(expected.len() > 900_000, "{} windows", expected.len());
    assert_eq!(got.len(), expected.len(), "as many (key, window) pairs as GROUP BY finds");
    assert!(got == expected, "every (key, window) sums as in PostgreSQL");
    drop(many);

    // Hopping and session windows over fewer keys, so that windows hold
    // many records each.
    let fewer = records(300_000, 1_000, 600_000, 3_000);
    load(&pg, "fewer", &fewer);
    let hopping = query(
        &pg,
        "SELECT k, n * 10000, n * 10000 + 30000, sum(v) FROM fewer, \
         generate_series(floor((ts - 30000) / 10000.0)::bigint + 1, floor(ts / 10000.0)::bigint) AS n GROUP BY k, n",
    );
    assert_eq!(windowed_sums("hopping=30s,advance=10s,lateness=3s", &fewer), hopping);
    let sessions = query(
        &pg,
        "WITH marked AS (SELECT k, ts, v, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts) < 2000 THEN 0 ELSE 1 END AS starts FROM fewer), \
         numbered AS (SELECT k, ts, v, sum(starts) OVER (PARTITION BY k ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session FROM marked) \
         SELECT k, min(ts), max(ts) + 2000, sum(v) FROM numbered GROUP BY k, session",
    );
    assert!(sessions.len() > 10_000, "{} sessions", sessions.len());
    let by_key: BTreeMap<&str, usize> = sessions.iter().fold(BTreeMap::new(), |mut counts, row| {
        *counts.entry(row.0.as_str()).or_default() += 1;
        counts
    });
    assert!(by_key.values().any(|count| *count > 1), "keys have several sessions");
    assert_eq!(windowed_sums("session=2s,lateness=3s", &fewer), sessions);
}
