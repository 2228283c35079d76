//! `sql-sink`: writes records into PostgreSQL, exactly once.
//!
//! ```yaml
//! sql:
//!   url: postgres://user:${{ secrets.DB_PASSWORD }}@127.0.0.1:5432/db
//!   table: readings              # plain mode: JSON objects, keys are columns
//!                                # (without it, records are Fluvio's SQL model)
//!   error-policy: fail           # fail (default), skip, or dead-letter
//!   dead-letter-topic: rejected  # with dead-letter: where refused records go
//!   offsets-table: fluvio_connector_offsets
//!   tables: [readings, alerts]   # SQL model: the only tables records may name
//!   sslmode: verify-full         # libpq's names; default prefer (see sql_tls)
//!   sslrootcert: /etc/ssl/db-ca.pem   # for verify-ca and verify-full
//! ```
//!
//! `sslmode` and `sslrootcert` may also be given in the URL's query, as
//! libpq takes them; the keys win.
//!
//! Records are either Fluvio's SQL model, so a transform written for
//! Fluvio's sql-sink works unchanged:
//!
//! ```json
//! {"Insert": {"table": "t", "values": [{"column": "id", "raw_value": "7", "type": "Int"}]}}
//! {"Upsert": {"table": "t", "values": [...], "uniq_idx": "id"}}
//! ```
//!
//! or, with `table:`, plain JSON objects whose keys name the table's columns.
//!
//! In the SQL model each record names its table, so whoever may produce to
//! the topic chooses where rows go: `tables` lists the only ones allowed
//! (a record naming another is refused, as a record, under the error
//! policy), and the sink's own `offsets-table` is never one of them, with
//! or without the list. A name or value holding a NUL character, which
//! PostgreSQL cannot take, is refused the same way.
//!
//! **Exactly once**: each batch is written in one transaction together with
//! the stream position after it (`next_offset`, per connector, topic and
//! partition, in `offsets-table` of the same database); a restarted sink
//! resumes from that position, so a record is in the table once however
//! the sink was stopped.
//!
//! Rows are written with `COPY ... FROM STDIN`, one per run of records with
//! the same shape (upserts, which COPY cannot do, as multi-row `INSERT ...
//! ON CONFLICT` statements). Values travel in PostgreSQL's text format, so
//! the server converts each to its column's type as a `text` cast would. When PostgreSQL refuses a statement because of its data
//! (a constraint, a type, an unknown column), the batch is written again row
//! by row, each under a savepoint, to find the refused records; the error
//! policy then decides: `fail` stops the connector with the first refusal
//! (nothing of the batch is committed), `skip` logs and counts them,
//! `dead-letter` sends them, with their error, to a topic. None is dropped
//! silently.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures::SinkExt;

use fluvio_client::{ConsumerBatch, ConsumerRecord, RecordKey, TopicProducer};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Transaction};

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{ConnectorError, ResumeKey, Sink, WriteReport};

/// What happens to a record PostgreSQL refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowPolicy {
    /// Stop the connector; the batch is not committed.
    Fail,
    /// Log it, count it, and go on.
    Skip,
    /// Send it with its error to this topic, and go on.
    DeadLetter(String),
}

/// How records map to rows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Fluvio's SQL model (`Insert` / `Upsert`).
    Model,
    /// JSON objects into one table.
    Plain { table: Arc<str> },
}

/// The `sql-sink` connector.
pub struct SqlSink {
    /// The URL without `sslmode` and `sslrootcert`.
    url: String,
    ssl_mode: crate::sql_tls::SslMode,
    /// The rustls config for any mode but `disable`.
    tls: Option<rustls::ClientConfig>,
    server: String,
    mode: Mode,
    policy: RowPolicy,
    offsets_table: String,
    /// SQL model: the tables records may name (any but the offsets table
    /// when `None`).
    tables: Option<HashSet<String>>,
    cluster_addr: String,
    client: Option<Client>,
    key: Option<ResumeKey>,
    columns: HashSet<String>,
    /// Plain mode: the columns whose type is `json` or `jsonb`, which take
    /// a value's JSON text (a string stays quoted).
    json_columns: HashSet<String>,
    dead_letters: Option<TopicProducer>,
}

impl std::fmt::Debug for SqlSink {
    // The URL may hold a password: only the server is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSink")
            .field("server", &self.server)
            .field("mode", &self.mode)
            .field("policy", &self.policy)
            .finish()
    }
}

/// `host:port/db` of a PostgreSQL URL, without user or password.
fn server_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split('?').next().unwrap_or(rest);
    format!("the PostgreSQL server at {rest}")
}

/// Quotes an identifier, schema-qualified names part by part.
/// The advisory lock sinks hold while they create their offsets table
/// (any number: it only has to be the same for every sink).
const OFFSETS_TABLE_LOCK: i64 = 0x666c_7576_696f_4f54;

fn quote(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

/// The PostgreSQL type a Fluvio SQL model type casts to.
fn pg_type(model_type: &str) -> Option<&'static str> {
    Some(match model_type {
        "Bool" => "boolean",
        "Char" => "char",
        "SmallInt" => "smallint",
        "Int" => "integer",
        "BigInt" => "bigint",
        "Float" => "real",
        "DoublePrecision" => "double precision",
        "Text" => "text",
        "Bytes" => "bytea",
        "Numeric" => "numeric",
        "Timestamp" => "timestamp",
        "Date" => "date",
        "Time" => "time",
        "Uuid" => "uuid",
        "Json" => "jsonb",
        _ => return None,
    })
}

/// One record of Fluvio's SQL model as a row to write.
#[derive(Debug, Clone)]
struct ModelRow {
    table: String,
    upsert_on: Option<String>,
    columns: Vec<String>,
    types: Vec<&'static str>,
    values: Vec<String>,
}

/// One plain record (a JSON object) as a row of the sink's table; it
/// borrows from its record.
#[derive(Debug, Clone)]
struct PlainRow<'a> {
    /// The sink's table, which every plain row names: a plain row exists
    /// only in plain mode.
    table: Arc<str>,
    /// Sorted.
    columns: Vec<Cow<'a, str>>,
    /// The JSON text of each column's value, in `columns`' order.
    values: Vec<&'a RawValue>,
    /// The whole record: a JSON object.
    record: &'a [u8],
}

/// One record as a row to write: its kind follows the sink's mode.
#[derive(Debug, Clone)]
enum Row<'a> {
    Model(ModelRow),
    Plain(PlainRow<'a>),
}

impl ModelRow {
    /// Rows of one table, columns and types go in one statement.
    fn same_shape(&self, other: &ModelRow) -> bool {
        (&self.table, &self.upsert_on, &self.columns, &self.types)
            == (&other.table, &other.upsert_on, &other.columns, &other.types)
    }
}

impl PlainRow<'_> {
    /// Rows with the same columns go in one statement.
    fn same_shape(&self, other: &PlainRow<'_>) -> bool {
        self.table == other.table && self.columns == other.columns
    }
}

/// Consecutive rows of one shape, written by one statement: a run's rows
/// are all of one kind, so each statement reads its rows' fields directly.
enum Run<'a, 'r> {
    Model(Vec<&'a ModelRow>),
    Plain(Vec<&'a PlainRow<'r>>),
}

impl Run<'_, '_> {
    fn len(&self) -> usize {
        match self {
            Run::Model(rows) => rows.len(),
            Run::Plain(rows) => rows.len(),
        }
    }

    /// Whether COPY can write it (it cannot upsert).
    fn copyable(&self) -> bool {
        match self {
            Run::Model(rows) => rows[0].upsert_on.is_none(),
            Run::Plain(_) => true,
        }
    }

    /// Whether one more row of its shape may join it: any number for
    /// COPY, within the parameter limit for an INSERT (counted per column,
    /// which bounds the plain rows' one array parameter too).
    fn takes_one_more(&self, bulk: bool) -> bool {
        let per_row = match self {
            Run::Model(rows) => rows[0].columns.len(),
            Run::Plain(rows) => rows[0].columns.len(),
        };
        (bulk && self.copyable()) || (self.len() + 1) * per_row.max(1) <= MAX_PARAMS
    }
}

/// Cuts rows into runs of one shape: as long as COPY allows when `bulk`
/// (and the run can be copied), else within an INSERT's parameter limit.
fn runs<'a, 'r>(rows: &[&'a Row<'r>], bulk: bool) -> Vec<Run<'a, 'r>> {
    let mut runs: Vec<Run<'a, 'r>> = Vec::new();
    for row in rows {
        let joins = match (runs.last(), row) {
            (Some(run @ Run::Model(models)), Row::Model(model)) => {
                models[0].same_shape(model) && run.takes_one_more(bulk)
            }
            (Some(run @ Run::Plain(plains)), Row::Plain(plain)) => {
                plains[0].same_shape(plain) && run.takes_one_more(bulk)
            }
            _ => false,
        };
        match (runs.last_mut(), row) {
            (Some(Run::Model(models)), Row::Model(model)) if joins => models.push(model),
            (Some(Run::Plain(plains)), Row::Plain(plain)) if joins => plains.push(plain),
            (_, Row::Model(model)) => runs.push(Run::Model(vec![model])),
            (_, Row::Plain(plain)) => runs.push(Run::Plain(vec![plain])),
        }
    }
    runs
}

/// Whether two table names may name the same table: the same name, in any
/// schema (a record may write `public.t` for `t`), in any case.
fn same_table(a: &str, b: &str) -> bool {
    let name = |table: &str| table.rsplit('.').next().unwrap_or(table).trim_matches('"').to_ascii_lowercase();
    name(a) == name(b)
}

/// Refuses text PostgreSQL cannot take: the driver would fail the whole
/// statement without an SQLSTATE, which looks like a broken connection.
fn no_nul(what: &str, text: &str) -> Result<(), String> {
    match text.contains('\0') {
        true => Err(format!("{what} holds a NUL character, which PostgreSQL cannot store")),
        false => Ok(()),
    }
}

/// Reads one record of Fluvio's SQL model.
fn model_row(value: &[u8]) -> Result<Row<'static>, String> {
    let json: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let (operation, body) = match json.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) {
        Some((operation, body)) if operation == "Insert" || operation == "Upsert" => (operation.clone(), body),
        _ => return Err("not a SQL model record: expected {\"Insert\": {...}} or {\"Upsert\": {...}}".into()),
    };
    let table = body["table"].as_str().ok_or_else(|| format!("{operation} has no \"table\""))?.to_string();
    no_nul("the table name", &table)?;
    let upsert_on = if operation == "Upsert" {
        Some(body["uniq_idx"].as_str().ok_or_else(|| "Upsert has no \"uniq_idx\"".to_string())?.to_string())
    } else {
        None
    };
    let values = body["values"].as_array().ok_or_else(|| format!("{operation} has no \"values\" list"))?;
    let mut columns = Vec::with_capacity(values.len());
    let mut types = Vec::with_capacity(values.len());
    let mut raw = Vec::with_capacity(values.len());
    for value in values {
        let column = value["column"].as_str().ok_or("a value has no \"column\"")?;
        let model_type = value["type"].as_str().ok_or_else(|| format!("column {column:?} has no \"type\""))?;
        let pg = pg_type(model_type).ok_or_else(|| format!("column {column:?} has unknown type {model_type:?}"))?;
        let raw_value = match &value["raw_value"] {
            Value::String(s) => s.clone(),
            Value::Null => return Err(format!("column {column:?} has no \"raw_value\"")),
            other => other.to_string(),
        };
        no_nul("a column name", column)?;
        no_nul(&format!("the value of column {column:?}"), &raw_value)?;
        columns.push(column.to_string());
        types.push(pg);
        raw.push(raw_value);
    }
    if columns.is_empty() {
        return Err(format!("{operation} into {table:?} has no values"));
    }
    Ok(Row::Model(ModelRow { table, upsert_on, columns, types, values: raw }))
}

/// A JSON object's members as they are in the record: keys borrowed unless
/// they hold escapes, values as their JSON text. No tree is built.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// A key, borrowed from the record when it can be.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> serde::de::Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Members<'de>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(key), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Reads one plain record: a JSON object whose keys are columns of the table.
fn plain_row<'a>(value: &'a [u8], table: &Arc<str>, known: &HashSet<String>) -> Result<Row<'a>, String> {
    let Members(mut members) = match serde_json::from_slice::<Members<'a>>(value) {
        Ok(members) => members,
        Err(error) if error.classify() == serde_json::error::Category::Data => {
            return Err("not a JSON object".into());
        }
        Err(error) => return Err(format!("not JSON: {error}")),
    };
    if members.is_empty() {
        return Err("an empty JSON object has no column to write".into());
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(twice) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("the key {:?} appears twice", twice[0].0));
    }
    if let Some((unknown, _)) = members.iter().find(|(column, _)| !known.contains(column.as_ref())) {
        return Err(format!("the table has no column {unknown:?}"));
    }
    let (columns, values) = members.into_iter().unzip();
    Ok(Row::Plain(PlainRow { table: Arc::clone(table), columns, values, record: value }))
}

/// Appends one plain value in COPY's text format: JSON null is NULL, a
/// string its text (into a json column, its JSON text), anything else its
/// JSON text.
fn copy_json_value(buffer: &mut BytesMut, value: &RawValue, json_column: bool) {
    let text = value.get();
    if text == "null" {
        buffer.put_slice(b"\\N");
    } else if text.starts_with('"') && !json_column {
        let inner = &text[1..text.len() - 1];
        if inner.contains('\\') {
            let unescaped: String = serde_json::from_str(text).expect("serde_json checked the string");
            copy_text(buffer, &unescaped);
        } else {
            copy_text(buffer, inner);
        }
    } else {
        copy_text(buffer, text);
    }
}

/// Most parameters one statement may have (PostgreSQL allows 65535).
const MAX_PARAMS: usize = 60_000;

/// COPY data is sent in chunks of about this size.
const COPY_CHUNK: usize = 64 << 10;

/// Appends `text` in COPY's text format: backslash, tab, newline and
/// carriage return escaped.
fn copy_text(buffer: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let mut from = 0;
    for (i, byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buffer.put_slice(&bytes[from..i]);
        buffer.put_slice(escaped);
        from = i + 1;
    }
    buffer.put_slice(&bytes[from..]);
}

/// One INSERT statement for a run of model rows.
fn model_statement(rows: &[&ModelRow]) -> (String, Vec<String>) {
    let ModelRow { table, upsert_on, columns, types, .. } = rows[0];
    let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let mut params = Vec::with_capacity(rows.len() * columns.len());
    let mut tuples = Vec::with_capacity(rows.len());
    for row in rows {
        let placeholders: Vec<String> = row
            .values
            .iter()
            .zip(types.iter())
            .map(|(value, ty)| {
                params.push(value.clone());
                format!("${}::text::{ty}", params.len())
            })
            .collect();
        tuples.push(format!("({})", placeholders.join(", ")));
    }
    let mut sql = format!("INSERT INTO {} ({column_list}) VALUES {}", quote(table), tuples.join(", "));
    if let Some(unique) = upsert_on {
        let updates: Vec<String> =
            columns.iter().filter(|c| *c != unique).map(|c| format!("{} = EXCLUDED.{}", quote(c), quote(c))).collect();
        if updates.is_empty() {
            sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", quote(unique)));
        } else {
            sql.push_str(&format!(" ON CONFLICT ({}) DO UPDATE SET {}", quote(unique), updates.join(", ")));
        }
    }
    (sql, params)
}

/// One INSERT statement for a run of plain rows: the records are JSON
/// objects already, so the parameter is their array's text.
fn plain_statement(rows: &[&PlainRow<'_>]) -> (String, Vec<String>) {
    let PlainRow { table, columns, .. } = rows[0];
    let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
    let mut array = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(std::str::from_utf8(row.record).expect("serde_json checked the record is UTF-8"));
    }
    array.push(']');
    let sql = format!(
        "INSERT INTO {t} ({column_list}) SELECT {column_list} FROM json_populate_recordset(NULL::{t}, $1::text::json)",
        t = quote(table)
    );
    (sql, vec![array])
}

/// Whether PostgreSQL refused a statement because of the data in it (so
/// some record is at fault), rather than the connection or the server.
fn refused_data(error: &tokio_postgres::Error) -> bool {
    if let Some(code) = error.code() {
        return matches!(&code.code()[..2], "21" | "22" | "23" | "42");
    }
    // No SQLSTATE: the driver refused the statement before sending it (a
    // value it cannot encode, say), unless the connection itself failed.
    use std::error::Error;
    let io = error.source().is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
    !error.is_closed() && !io && error.as_db_error().is_none()
}

impl SqlSink {
    /// Reads the `sql` section of a config; `cluster_addr` is where a
    /// dead-letter topic is written.
    pub fn from_config(config: &ConnectorConfig, cluster_addr: &str) -> Result<SqlSink, ConfigError> {
        let section = config.section()?;
        section.only(&[
            "url",
            "table",
            "error-policy",
            "dead-letter-topic",
            "offsets-table",
            "tables",
            "sslmode",
            "sslrootcert",
            "backoff_min",
            "backoff_max",
            "backoff-min",
            "backoff-max",
        ])?;
        let url = section.string("url")?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(section.invalid("url", "the sql-sink writes to PostgreSQL: use a postgres://... URL"));
        }
        let (url, url_mode, url_root) = crate::sql_tls::split_url(&url);
        let (mode_key, mode_name) = match section.opt_string("sslmode")? {
            Some(name) => ("sslmode", Some(name)),
            None => ("url", url_mode),
        };
        let ssl_mode = match mode_name.as_deref() {
            None => crate::sql_tls::SslMode::Prefer,
            Some(name) => crate::sql_tls::SslMode::parse(name).ok_or_else(|| {
                section.invalid(
                    mode_key,
                    format!("sslmode {name:?} is not one of disable, prefer, require, verify-ca, verify-full"),
                )
            })?,
        };
        let root_cert = section.opt_string("sslrootcert")?.or(url_root).map(PathBuf::from);
        let tls = match ssl_mode {
            crate::sql_tls::SslMode::Disable => None,
            mode => Some(
                crate::sql_tls::client_config(mode, root_cert.as_deref())
                    .map_err(|error| section.invalid("sslrootcert", error.to_string()))?,
            ),
        };
        if let Err(error) = url.parse::<tokio_postgres::Config>() {
            return Err(section.invalid("url", format!("not a PostgreSQL URL: {error}")));
        }
        for key in ["backoff_min", "backoff_max", "backoff-min", "backoff-max"] {
            section.opt_duration(key)?;
        }
        let mode = match section.opt_string("table")? {
            Some(table) => Mode::Plain { table: table.into() },
            None => Mode::Model,
        };
        let policy = match section.opt_string("error-policy")?.as_deref() {
            None | Some("fail") => RowPolicy::Fail,
            Some("skip") => RowPolicy::Skip,
            Some("dead-letter") => {
                RowPolicy::DeadLetter(section.opt_string("dead-letter-topic")?.ok_or_else(|| {
                    section.invalid("dead-letter-topic", "the dead-letter policy needs a topic for the refused records")
                })?)
            }
            Some(other) => {
                return Err(section.invalid("error-policy", format!("{other:?} is not fail, skip or dead-letter")));
            }
        };
        let offsets_table = section.opt_string("offsets-table")?.unwrap_or_else(|| "fluvio_connector_offsets".into());
        let tables = section.opt_strings("tables")?.map(|tables| tables.into_iter().collect::<HashSet<String>>());
        let names_offsets = |table: &str| same_table(table, &offsets_table);
        if let Some(tables) = &tables
            && let Some(table) = tables.iter().find(|table| names_offsets(table))
        {
            return Err(section.invalid(
                "tables",
                format!(
                    "{table:?} is the sink's offsets table, where it keeps its position; records may never write it"
                ),
            ));
        }
        match &mode {
            Mode::Plain { table } if names_offsets(table) => {
                return Err(
                    section.invalid("table", format!("{table:?} is the sink's offsets table; write rows elsewhere"))
                );
            }
            Mode::Plain { .. } if tables.is_some() => {
                return Err(
                    section.invalid("tables", "`tables` is for SQL model records; with `table` every row goes there")
                );
            }
            _ => {}
        }
        Ok(SqlSink {
            server: server_of(&url),
            url,
            ssl_mode,
            tls,
            mode,
            policy,
            offsets_table,
            tables,
            cluster_addr: cluster_addr.to_string(),
            client: None,
            key: None,
            columns: HashSet::new(),
            json_columns: HashSet::new(),
            dead_letters: None,
        })
    }

    /// Sorts a database error into retry-worthy or not.
    fn classify(&self, error: tokio_postgres::Error) -> ConnectorError {
        // A certificate the sink may not trust stays so: retrying cannot help.
        if let Some(reason) = crate::sql_tls::certificate_refused(&error) {
            return ConnectorError::Fatal(format!(
                "{}: the server's certificate was refused ({reason}); check sslmode and sslrootcert",
                self.server
            ));
        }
        let transient = match error.code() {
            None => true,
            Some(code) => matches!(&code.code()[..2], "08" | "40" | "53" | "57"),
        };
        if transient {
            ConnectorError::Transient { system: self.server.clone(), reason: error.to_string() }
        } else {
            ConnectorError::Fatal(format!("{}: {}", self.server, db_message(&error)))
        }
    }

    /// Writes rows in as few statements as their shapes allow: `bulk`
    /// uses COPY where it can; otherwise (row by row, to find a refused
    /// record) INSERT statements.
    async fn execute_rows(
        &self,
        tx: &Transaction<'_>,
        rows: &[&Row<'_>],
        bulk: bool,
    ) -> Result<(), tokio_postgres::Error> {
        for run in runs(rows, bulk) {
            if bulk && run.copyable() {
                self.copy_rows(tx, &run).await?;
                continue;
            }
            let (sql, params) = match &run {
                Run::Model(rows) => model_statement(rows),
                Run::Plain(rows) => plain_statement(rows),
            };
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            tx.execute(sql.as_str(), &params).await?;
        }
        Ok(())
    }

    /// One `COPY ... FROM STDIN` for a run of rows.
    async fn copy_rows(&self, tx: &Transaction<'_>, run: &Run<'_, '_>) -> Result<(), tokio_postgres::Error> {
        let (table, columns): (&str, Vec<&str>) = match run {
            Run::Model(rows) => (&rows[0].table, rows[0].columns.iter().map(String::as_str).collect()),
            Run::Plain(rows) => (&rows[0].table, rows[0].columns.iter().map(|c| c.as_ref()).collect()),
        };
        let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let sink = tx.copy_in(&format!("COPY {} ({column_list}) FROM STDIN", quote(table))).await?;
        futures::pin_mut!(sink);
        let mut buffer = BytesMut::with_capacity(COPY_CHUNK + 4096);
        // Plain rows of one run share their columns: which take JSON text.
        let json_columns: Vec<bool> = match run {
            Run::Plain(_) => columns.iter().map(|c| self.json_columns.contains(*c)).collect(),
            Run::Model(_) => Vec::new(),
        };
        match run {
            Run::Model(rows) => {
                for row in rows {
                    for (i, value) in row.values.iter().enumerate() {
                        if i > 0 {
                            buffer.put_u8(b'\t');
                        }
                        copy_text(&mut buffer, value);
                    }
                    buffer.put_u8(b'\n');
                    if buffer.len() >= COPY_CHUNK {
                        sink.send(buffer.split().freeze()).await?;
                    }
                }
            }
            Run::Plain(rows) => {
                for row in rows {
                    for (i, value) in row.values.iter().enumerate() {
                        if i > 0 {
                            buffer.put_u8(b'\t');
                        }
                        copy_json_value(&mut buffer, value, json_columns[i]);
                    }
                    buffer.put_u8(b'\n');
                    if buffer.len() >= COPY_CHUNK {
                        sink.send(buffer.split().freeze()).await?;
                    }
                }
            }
        }
        if !buffer.is_empty() {
            sink.send(buffer.freeze()).await?;
        }
        sink.finish().await?;
        Ok(())
    }

    async fn commit_offset(&self, tx: &Transaction<'_>, next_offset: i64) -> Result<(), tokio_postgres::Error> {
        let key = self.key.as_ref().expect("connected before writing");
        let sql = format!(
            "INSERT INTO {t} (connector, topic, partition, next_offset) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connector, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            t = quote(&self.offsets_table)
        );
        tx.execute(sql.as_str(), &[&key.connector, &key.topic, &(key.partition as i32), &next_offset]).await?;
        Ok(())
    }

    /// Sends refused records to the dead-letter topic (before the batch
    /// commits: at least once).
    async fn dead_letter(&mut self, topic: &str, refused: &[(&ConsumerRecord, String)]) -> Result<(), ConnectorError> {
        if self.dead_letters.is_none() {
            self.dead_letters = Some(crate::runtime::dead_letter_producer(&self.cluster_addr, topic).await?);
        }
        let producer = self.dead_letters.as_ref().expect("created above");
        let mut outputs = Vec::with_capacity(refused.len());
        for (record, error) in refused {
            let letter = serde_json::json!({
                "offset": record.offset,
                "error": error,
                "key": record.key.as_deref().map(String::from_utf8_lossy),
                "value": String::from_utf8_lossy(&record.value),
            });
            outputs.push(producer.send(RecordKey::from_option(record.key.clone()), letter.to_string()).await?);
        }
        producer.flush().await?;
        for output in outputs {
            output.wait().await?;
        }
        Ok(())
    }
}

/// Connects with `tls` (plain or rustls) and drives the connection on a
/// task of its own.
async fn connect_with<T>(config: &tokio_postgres::Config, tls: T) -> Result<Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

fn db_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

impl Sink for SqlSink {
    async fn connect(&mut self, key: &ResumeKey) -> Result<Option<i64>, ConnectorError> {
        self.client = None;
        let mut config: tokio_postgres::Config =
            self.url.parse().map_err(|e| ConnectorError::Fatal(format!("{}: {e}", self.server)))?;
        config.ssl_mode(self.ssl_mode.negotiation());
        let connected = match &self.tls {
            None => connect_with(&config, NoTls).await,
            Some(tls) => connect_with(&config, tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone())).await,
        };
        let client = connected.map_err(|e| self.classify(e))?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (connector TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, \
             next_offset BIGINT NOT NULL, PRIMARY KEY (connector, topic, partition))",
            quote(&self.offsets_table)
        );
        // Partitions' sinks connect at once: a transaction-scoped advisory
        // lock makes them create the table one after another, since
        // concurrent `CREATE TABLE IF NOT EXISTS` can still fail on the
        // catalog's unique indexes.
        let lock = format!("BEGIN; SELECT pg_advisory_xact_lock({OFFSETS_TABLE_LOCK}); {create}; COMMIT");
        client.batch_execute(&lock).await.map_err(|e| self.classify(e))?;
        if let Mode::Plain { table } = &self.mode {
            let (schema, name) = match table.split_once('.') {
                Some((schema, name)) => (Some(schema.to_string()), name.to_string()),
                None => (None, table.to_string()),
            };
            let rows = client
                .query(
                    "SELECT column_name::text, data_type::text FROM information_schema.columns \
                     WHERE table_name = $1 AND table_schema = coalesce($2, current_schema())",
                    &[&name, &schema],
                )
                .await
                .map_err(|e| self.classify(e))?;
            if rows.is_empty() {
                return Err(ConnectorError::Fatal(format!(
                    "{}: the table {table:?} does not exist (or has no columns); create it first",
                    self.server
                )));
            }
            self.columns = rows.iter().map(|row| row.get::<_, String>(0)).collect();
            self.json_columns = rows
                .iter()
                .filter(|row| matches!(row.get::<_, String>(1).as_str(), "json" | "jsonb"))
                .map(|row| row.get::<_, String>(0))
                .collect();
        }
        let select = format!(
            "SELECT next_offset FROM {} WHERE connector = $1 AND topic = $2 AND partition = $3",
            quote(&self.offsets_table)
        );
        let committed = client
            .query_opt(select.as_str(), &[&key.connector, &key.topic, &(key.partition as i32)])
            .await
            .map_err(|e| self.classify(e))?
            .map(|row| row.get::<_, i64>(0));
        tracing::info!(server = %self.server, ?committed, "connected");
        self.client = Some(client);
        self.key = Some(key.clone());
        Ok(committed)
    }

    async fn write(&mut self, batch: &ConsumerBatch) -> Result<WriteReport, ConnectorError> {
        let mut refused: Vec<(&ConsumerRecord, String)> = Vec::new();
        let mut rows: Vec<(&ConsumerRecord, Row<'_>)> = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            let parsed = match &self.mode {
                Mode::Model => model_row(&record.value).and_then(|row| self.allowed(row)),
                Mode::Plain { table } => plain_row(&record.value, table, &self.columns),
            };
            match parsed {
                Ok(row) => rows.push((record, row)),
                Err(reason) => refused.push((record, reason)),
            }
        }
        let mut client = self
            .client
            .take()
            .ok_or_else(|| ConnectorError::Transient { system: self.server.clone(), reason: "not connected".into() })?;
        let result = self.write_rows(&mut client, batch.next_offset, &rows, &mut refused).await;
        self.client = Some(client);
        let written = result?;
        Ok(WriteReport { written, rejected: refused.len() as u64 })
    }
}

impl SqlSink {
    /// A SQL model row, if the table it names is one records may write.
    fn allowed<'a>(&self, row: Row<'a>) -> Result<Row<'a>, String> {
        let Row::Model(model) = &row else { return Ok(row) };
        if same_table(&model.table, &self.offsets_table) {
            return Err(format!(
                "the record names {:?}, the sink's offsets table, which records may never write",
                model.table
            ));
        }
        match &self.tables {
            Some(tables) if !tables.contains(&model.table) => {
                let mut names: Vec<&str> = tables.iter().map(String::as_str).collect();
                names.sort_unstable();
                Err(format!(
                    "the record names table {:?}, which is not in the sink's `tables` ({})",
                    model.table,
                    names.join(", ")
                ))
            }
            _ => Ok(row),
        }
    }

    /// Writes `rows` and the offset in one transaction; records refused
    /// (while parsing, or by the database) are in `refused` and follow the
    /// policy. Returns the number of rows written.
    async fn write_rows<'r>(
        &mut self,
        client: &mut Client,
        next_offset: i64,
        rows: &[(&'r ConsumerRecord, Row<'r>)],
        refused: &mut Vec<(&'r ConsumerRecord, String)>,
    ) -> Result<u64, ConnectorError> {
        let all: Vec<&Row<'_>> = rows.iter().map(|(_, row)| row).collect();
        if refused.is_empty() || self.policy != RowPolicy::Fail {
            // The common case: every row in a few statements.
            let tx = client.transaction().await.map_err(|e| self.classify(e))?;
            match self.execute_rows(&tx, &all, true).await {
                Ok(()) if refused.is_empty() => {
                    self.commit_offset(&tx, next_offset).await.map_err(|e| self.classify(e))?;
                    tx.commit().await.map_err(|e| self.classify(e))?;
                    return Ok(rows.len() as u64);
                }
                Ok(()) => {}
                Err(error) if refused_data(&error) => {}
                Err(error) => return Err(self.classify(error)),
            }
            // Dropping `tx` rolls it back.
        }
        // Some record is at fault: find which, row by row.
        let mut tx = client.transaction().await.map_err(|e| self.classify(e))?;
        let mut written = 0u64;
        if refused.is_empty() || self.policy != RowPolicy::Fail {
            for (record, row) in rows {
                let savepoint = tx.savepoint("fluvio_row").await.map_err(|e| self.classify(e))?;
                match self.execute_rows(&savepoint, &[row], false).await {
                    Ok(()) => {
                        savepoint.commit().await.map_err(|e| self.classify(e))?;
                        written += 1;
                    }
                    Err(error) if refused_data(&error) => {
                        savepoint.rollback().await.map_err(|e| self.classify(e))?;
                        refused.push((record, db_message(&error)));
                        if self.policy == RowPolicy::Fail {
                            break;
                        }
                    }
                    Err(error) => return Err(self.classify(error)),
                }
            }
        }
        refused.sort_by_key(|(record, _)| record.offset);
        if let Some((record, reason)) = refused.first() {
            match self.policy.clone() {
                RowPolicy::Fail => {
                    return Err(ConnectorError::Fatal(format!(
                        "{} refused the record at offset {}: {reason}; the batch was not written (error-policy: fail; use skip or dead-letter to go on)",
                        self.server, record.offset
                    )));
                }
                RowPolicy::Skip => {
                    for (record, reason) in refused.iter() {
                        tracing::warn!(offset = record.offset, %reason, "skipping a record the database refused");
                    }
                }
                RowPolicy::DeadLetter(topic) => self.dead_letter(&topic, refused).await?,
            }
        }
        self.commit_offset(&tx, next_offset).await.map_err(|e| self.classify(e))?;
        tx.commit().await.map_err(|e| self.classify(e))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_the_text_format_needs() {
        let mut buffer = BytesMut::new();
        copy_text(&mut buffer, "a\tb\nc\\d\re");
        assert_eq!(&buffer[..], b"a\\tb\\nc\\\\d\\re");
        let mut buffer = BytesMut::new();
        copy_text(&mut buffer, "plain, \"quoted\" and \u{e9}");
        assert_eq!(&buffer[..], "plain, \"quoted\" and \u{e9}".as_bytes());
    }

    #[test]
    fn the_sql_model_reads_as_fluvio_writes_it() {
        let insert = br#"{"Insert":{"table":"readings","values":[{"column":"id","raw_value":"7","type":"Int"},{"column":"note","raw_value":"hi","type":"Text"}]}}"#;
        let Row::Model(row) = model_row(insert).unwrap() else { panic!("a model row") };
        let (sql, params) = model_statement(&[&row, &row]);
        assert_eq!(
            sql,
            r#"INSERT INTO "readings" ("id", "note") VALUES ($1::text::integer, $2::text::text), ($3::text::integer, $4::text::text)"#
        );
        assert_eq!(params, ["7", "hi", "7", "hi"]);
        let upsert = br#"{"Upsert":{"table":"s.t","uniq_idx":"id","values":[{"column":"id","raw_value":"1","type":"BigInt"},{"column":"v","raw_value":"2.5","type":"DoublePrecision"}]}}"#;
        let Row::Model(row) = model_row(upsert).unwrap() else { panic!("a model row") };
        let (sql, _) = model_statement(&[&row]);
        assert_eq!(
            sql,
            r#"INSERT INTO "s"."t" ("id", "v") VALUES ($1::text::bigint, $2::text::double precision) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v""#
        );
    }

    #[test]
    fn records_may_not_name_the_offsets_table_or_hold_a_nul() {
        let insert = |table: &str, value: &str| {
            serde_json::json!({"Insert": {"table": table, "values": [{"column": "id", "raw_value": value, "type": "Text"}]}})
                .to_string()
        };
        assert!(model_row(insert("bad\u{0}name", "1").as_bytes()).unwrap_err().contains("NUL"));
        assert!(model_row(insert("t", "a\u{0}b").as_bytes()).unwrap_err().contains("NUL"));
        for offsets in ["fluvio_connector_offsets", "public.fluvio_connector_offsets", "FLUVIO_CONNECTOR_OFFSETS"] {
            assert!(same_table(offsets, "fluvio_connector_offsets"), "{offsets}");
        }
        assert!(!same_table("readings", "fluvio_connector_offsets"));
    }

    #[test]
    fn malformed_records_are_refused_with_a_reason() {
        assert!(model_row(b"not json").unwrap_err().contains("not JSON"));
        assert!(model_row(br#"{"Delete":{}}"#).unwrap_err().contains("not a SQL model"));
        assert!(
            model_row(br#"{"Insert":{"table":"t","values":[{"column":"a","raw_value":"1","type":"Huge"}]}}"#)
                .unwrap_err()
                .contains("unknown type \"Huge\"")
        );
        let known: HashSet<String> = ["a".to_string()].into();
        assert!(plain_row(br#"{"a":1,"b":2}"#, &"t".into(), &known).unwrap_err().contains("no column \"b\""));
        assert!(plain_row(b"[1]", &"t".into(), &known).unwrap_err().contains("not a JSON object"));
        assert!(plain_row(b"{\"a\":", &"t".into(), &known).unwrap_err().contains("not JSON"));
        assert!(plain_row(br#"{"a":1,"a":2}"#, &"t".into(), &known).unwrap_err().contains("appears twice"));
    }

    #[test]
    fn plain_values_become_copy_text() {
        let known: HashSet<String> = ["a", "b\"c", "doc", "n"].map(String::from).into();
        let record = br#"{"n": null, "doc": "x\ty", "b\"c": 2.5, "a": "line\nbreak \\ \u00e9"}"#;
        let Row::Plain(PlainRow { columns, values, .. }) = plain_row(record, &"t".into(), &known).unwrap() else {
            panic!("a plain row")
        };
        assert_eq!(columns, ["a", "b\"c", "doc", "n"]);
        let copied = |value: &RawValue, json: bool| {
            let mut buffer = BytesMut::new();
            copy_json_value(&mut buffer, value, json);
            String::from_utf8(buffer.to_vec()).unwrap()
        };
        assert_eq!(copied(values[0], false), "line\\nbreak \\\\ \u{e9}");
        assert_eq!(copied(values[1], false), "2.5");
        assert_eq!(copied(values[2], false), "x\\ty");
        assert_eq!(copied(values[2], true), "\"x\\\\ty\"");
        assert_eq!(copied(values[3], false), "\\N");
    }

    #[test]
    fn identifiers_are_quoted_and_passwords_hidden() {
        assert_eq!(quote(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(
            server_of("postgres://user:secret@db:5432/app?sslmode=disable"),
            "the PostgreSQL server at db:5432/app"
        );
    }
}
