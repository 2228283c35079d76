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
//! ```
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

use std::collections::HashSet;

use bytes::{BufMut, BytesMut};
use futures::SinkExt;

use fluvio_client::{ConsumerBatch, ConsumerRecord, TopicProducer};
use serde_json::Value;
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
    Plain { table: String },
}

/// The `sql-sink` connector.
pub struct SqlSink {
    url: String,
    server: String,
    mode: Mode,
    policy: RowPolicy,
    offsets_table: String,
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

/// One record as a row to write.
#[derive(Debug, Clone, PartialEq)]
enum Row {
    Model {
        table: String,
        upsert_on: Option<String>,
        columns: Vec<String>,
        types: Vec<&'static str>,
        values: Vec<String>,
    },
    Plain {
        columns: Vec<String>,
        object: serde_json::Map<String, Value>,
    },
}

impl Row {
    /// Whether COPY can write it (it cannot upsert).
    fn copyable(&self) -> bool {
        !matches!(self, Row::Model { upsert_on: Some(_), .. })
    }

    /// Rows with the same shape go in one statement.
    fn shape(&self) -> (Option<&str>, Option<&str>, &[String], &[&'static str]) {
        match self {
            Row::Model { table, upsert_on, columns, types, .. } => (Some(table), upsert_on.as_deref(), columns, types),
            Row::Plain { columns, .. } => (None, None, columns, &[]),
        }
    }
}

/// Reads one record of Fluvio's SQL model.
fn model_row(value: &[u8]) -> Result<Row, String> {
    let json: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let (operation, body) = match json.as_object().filter(|o| o.len() == 1).and_then(|o| o.iter().next()) {
        Some((operation, body)) if operation == "Insert" || operation == "Upsert" => (operation.clone(), body),
        _ => return Err("not a SQL model record: expected {\"Insert\": {...}} or {\"Upsert\": {...}}".into()),
    };
    let table = body["table"].as_str().ok_or_else(|| format!("{operation} has no \"table\""))?.to_string();
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
        columns.push(column.to_string());
        types.push(pg);
        raw.push(raw_value);
    }
    if columns.is_empty() {
        return Err(format!("{operation} into {table:?} has no values"));
    }
    Ok(Row::Model { table, upsert_on, columns, types, values: raw })
}

/// Reads one plain record: a JSON object whose keys are columns of the table.
fn plain_row(value: &[u8], known: &HashSet<String>) -> Result<Row, String> {
    let json: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(object) = json else { return Err("not a JSON object".into()) };
    if object.is_empty() {
        return Err("an empty JSON object has no column to write".into());
    }
    let mut columns: Vec<String> = object.keys().cloned().collect();
    columns.sort();
    if let Some(unknown) = columns.iter().find(|c| !known.contains(*c)) {
        return Err(format!("the table has no column {unknown:?}"));
    }
    Ok(Row::Plain { columns, object })
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

/// One statement for rows of the same shape.
fn statement(mode: &Mode, rows: &[&Row]) -> (String, Vec<String>) {
    match (mode, rows[0]) {
        (_, Row::Model { table, upsert_on, columns, types, .. }) => {
            let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            let mut params = Vec::with_capacity(rows.len() * columns.len());
            let mut tuples = Vec::with_capacity(rows.len());
            for row in rows {
                let Row::Model { values, .. } = row else { unreachable!("rows share a shape") };
                let placeholders: Vec<String> = values
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
                let updates: Vec<String> = columns
                    .iter()
                    .filter(|c| *c != unique)
                    .map(|c| format!("{} = EXCLUDED.{}", quote(c), quote(c)))
                    .collect();
                if updates.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", quote(unique)));
                } else {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO UPDATE SET {}", quote(unique), updates.join(", ")));
                }
            }
            (sql, params)
        }
        (Mode::Plain { table }, Row::Plain { columns, .. }) => {
            let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            let objects: Vec<&serde_json::Map<String, Value>> = rows
                .iter()
                .map(|row| match row {
                    Row::Plain { object, .. } => object,
                    Row::Model { .. } => unreachable!("rows share a shape"),
                })
                .collect();
            let sql = format!(
                "INSERT INTO {t} ({column_list}) SELECT {column_list} FROM json_populate_recordset(NULL::{t}, $1::text::json)",
                t = quote(table)
            );
            (sql, vec![serde_json::to_string(&objects).expect("JSON values serialize")])
        }
        (Mode::Model, Row::Plain { .. }) => unreachable!("plain rows exist only in plain mode"),
    }
}

/// Whether PostgreSQL refused a statement because of the data in it (so
/// some record is at fault), rather than the connection or the server.
fn refused_data(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| matches!(&code.code()[..2], "21" | "22" | "23" | "42"))
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
            "backoff_min",
            "backoff_max",
            "backoff-min",
            "backoff-max",
        ])?;
        let url = section.string("url")?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(section.invalid("url", "the sql-sink writes to PostgreSQL: use a postgres://... URL"));
        }
        for key in ["backoff_min", "backoff_max", "backoff-min", "backoff-max"] {
            section.opt_duration(key)?;
        }
        let mode = match section.opt_string("table")? {
            Some(table) => Mode::Plain { table },
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
        Ok(SqlSink {
            server: server_of(&url),
            url,
            mode,
            policy,
            offsets_table: section.opt_string("offsets-table")?.unwrap_or_else(|| "fluvio_connector_offsets".into()),
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
    async fn execute_rows(&self, tx: &Transaction<'_>, rows: &[&Row], bulk: bool) -> Result<(), tokio_postgres::Error> {
        let mut start = 0;
        while start < rows.len() {
            // Runs of the same shape; INSERTs within the parameter limit.
            let shape = rows[start].shape();
            let copy = bulk && rows[start].copyable();
            let per_row = shape.2.len().max(1);
            let mut end = start + 1;
            while end < rows.len() && rows[end].shape() == shape && (copy || (end - start + 1) * per_row <= MAX_PARAMS)
            {
                end += 1;
            }
            if copy {
                self.copy_rows(tx, &rows[start..end]).await?;
            } else {
                let (sql, params) = statement(&self.mode, &rows[start..end]);
                let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                tx.execute(sql.as_str(), &params).await?;
            }
            start = end;
        }
        Ok(())
    }

    /// One `COPY ... FROM STDIN` for rows of one shape.
    async fn copy_rows(&self, tx: &Transaction<'_>, rows: &[&Row]) -> Result<(), tokio_postgres::Error> {
        let (table, columns) = match (&self.mode, rows[0]) {
            (_, Row::Model { table, columns, .. }) => (table.as_str(), columns),
            (Mode::Plain { table }, Row::Plain { columns, .. }) => (table.as_str(), columns),
            (Mode::Model, Row::Plain { .. }) => unreachable!("plain rows exist only in plain mode"),
        };
        let column_list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let sink = tx.copy_in(&format!("COPY {} ({column_list}) FROM STDIN", quote(table))).await?;
        futures::pin_mut!(sink);
        let mut buffer = BytesMut::with_capacity(COPY_CHUNK + 4096);
        for row in rows {
            match row {
                Row::Model { values, .. } => {
                    for (i, value) in values.iter().enumerate() {
                        if i > 0 {
                            buffer.put_u8(b'\t');
                        }
                        copy_text(&mut buffer, value);
                    }
                }
                Row::Plain { columns, object } => {
                    for (i, column) in columns.iter().enumerate() {
                        if i > 0 {
                            buffer.put_u8(b'\t');
                        }
                        match &object[column] {
                            Value::Null => buffer.put_slice(b"\\N"),
                            Value::String(text) if !self.json_columns.contains(column) => copy_text(&mut buffer, text),
                            other => copy_text(&mut buffer, &other.to_string()),
                        }
                    }
                }
            }
            buffer.put_u8(b'\n');
            if buffer.len() >= COPY_CHUNK {
                sink.send(buffer.split().freeze()).await?;
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
            outputs.push(producer.send(record.key.clone(), letter.to_string()).await?);
        }
        producer.flush().await?;
        for output in outputs {
            output.wait().await?;
        }
        Ok(())
    }
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
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.map_err(|e| self.classify(e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed");
            }
        });
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (connector TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, \
             next_offset BIGINT NOT NULL, PRIMARY KEY (connector, topic, partition))",
            quote(&self.offsets_table)
        );
        if let Err(error) = client.batch_execute(&create).await {
            // Two sinks creating the table at once: one of them loses the
            // race on the catalog, and the table exists either way.
            let raced = error.code().is_some_and(|c| c.code() == "23505" || c.code() == "42P07");
            if !raced {
                return Err(self.classify(error));
            }
        }
        if let Mode::Plain { table } = &self.mode {
            let (schema, name) = match table.split_once('.') {
                Some((schema, name)) => (Some(schema.to_string()), name.to_string()),
                None => (None, table.clone()),
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
        let mut rows: Vec<(&ConsumerRecord, Row)> = Vec::with_capacity(batch.records.len());
        for record in &batch.records {
            let parsed = match &self.mode {
                Mode::Model => model_row(&record.value),
                Mode::Plain { .. } => plain_row(&record.value, &self.columns),
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
    /// Writes `rows` and the offset in one transaction; records refused
    /// (while parsing, or by the database) are in `refused` and follow the
    /// policy. Returns the number of rows written.
    async fn write_rows<'r>(
        &mut self,
        client: &mut Client,
        next_offset: i64,
        rows: &[(&'r ConsumerRecord, Row)],
        refused: &mut Vec<(&'r ConsumerRecord, String)>,
    ) -> Result<u64, ConnectorError> {
        let all: Vec<&Row> = rows.iter().map(|(_, row)| row).collect();
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
        let row = model_row(insert).unwrap();
        let (sql, params) = statement(&Mode::Model, &[&row, &row]);
        assert_eq!(
            sql,
            r#"INSERT INTO "readings" ("id", "note") VALUES ($1::text::integer, $2::text::text), ($3::text::integer, $4::text::text)"#
        );
        assert_eq!(params, ["7", "hi", "7", "hi"]);
        let upsert = br#"{"Upsert":{"table":"s.t","uniq_idx":"id","values":[{"column":"id","raw_value":"1","type":"BigInt"},{"column":"v","raw_value":"2.5","type":"DoublePrecision"}]}}"#;
        let (sql, _) = statement(&Mode::Model, &[&model_row(upsert).unwrap()]);
        assert_eq!(
            sql,
            r#"INSERT INTO "s"."t" ("id", "v") VALUES ($1::text::bigint, $2::text::double precision) ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v""#
        );
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
        assert!(plain_row(br#"{"a":1,"b":2}"#, &known).unwrap_err().contains("no column \"b\""));
        assert!(plain_row(b"[1]", &known).unwrap_err().contains("not a JSON object"));
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
