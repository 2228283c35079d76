//! The web console on the HTTP listener: server-rendered pages of what the
//! server holds (topics, a topic's partitions and its readers' lag, the
//! SmartModule registry, connectors, health) and a live tail of a topic,
//! optionally through a registered SmartModule, over server-sent events.
//!
//! No front-end build step: each page is HTML written here, with a little
//! CSS, and the tail page's few lines of JavaScript, all in the binary.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use fluvio_protocol::SmartModuleInvocation;
use fluvio_smartengine::ErrorPolicy;
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};

use crate::ServerContext;

/// Bytes of a connector's log the console shows: its end.
const LOG_TAIL_BYTES: u64 = 4 << 10;

/// Bytes of source batches a tail reads at a time.
const TAIL_READ_BYTES: u64 = 256 << 10;

/// Records of one frame of a tail: each `data:` event is one record.
const TAIL_QUEUE: usize = 256;

/// A page: its status and HTML.
pub struct Page {
    /// 200, or 404 for what does not exist.
    pub found: bool,
    /// The whole document.
    pub html: String,
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(character),
        }
    }
    escaped
}

/// Escapes a path segment for a link.
fn link_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Decodes `%XX` in a path segment or query value (and `+` in a query).
pub fn percent_decode(text: &str) -> String {
    let hex = |byte: u8| (byte as char).to_digit(16).map(|digit| digit as u8);
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%'
            && let Some(high) = bytes.get(index + 1).copied().and_then(hex)
            && let Some(low) = bytes.get(index + 2).copied().and_then(hex)
        {
            decoded.push(high << 4 | low);
            index += 3;
            continue;
        }
        decoded.push(if byte == b'+' { b' ' } else { byte });
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The document around a page's body.
fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Fluvio console</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/\">Topics</a> <a href=\"/smartmodules\">SmartModules</a> \
         <a href=\"/connectors\">Connectors</a> <a href=\"/metrics\">Metrics</a></nav><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2330}\
nav{background:#1d2330;padding:.6em 1em}nav a{color:#fff;margin-right:1.2em;text-decoration:none}\
main{padding:1em 1.5em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #dde;padding:.3em .8em;text-align:left}th{background:#f3f4f8}\
td.n{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f3f4f8;padding:.8em;overflow:auto;max-height:30em}\
.bad{color:#b00020}.good{color:#08772e}#records td{font-family:monospace}";

/// A table: header cells and rows of already escaped cells (a cell that
/// starts with `#` is a number, right-aligned, without the `#`).
fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = format!("<table id=\"{id}\"><tr>");
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            match cell.strip_prefix('#') {
                Some(number) => {
                    let _ = write!(html, "<td class=\"n\">{number}</td>");
                }
                None => {
                    let _ = write!(html, "<td>{cell}</td>");
                }
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    html
}

/// The page at `path`, if there is one.
pub async fn page(context: &ServerContext, path: &str) -> Option<Page> {
    let found = |html| Some(Page { found: true, html });
    match path {
        "/" => found(overview(context).await),
        "/smartmodules" => found(smartmodules(context).await),
        "/connectors" => found(connectors(context).await),
        _ => {
            if let Some(topic) = path.strip_prefix("/topics/") {
                let topic = percent_decode(topic);
                return Some(match topic_page(context, &topic).await {
                    Some(html) => Page { found: true, html },
                    None => not_found(&format!("There is no topic {topic:?}.")),
                });
            }
            if let Some(topic) = path.strip_prefix("/tail/") {
                let topic = percent_decode(topic);
                return Some(match tail_page(context, &topic).await {
                    Some(html) => Page { found: true, html },
                    None => not_found(&format!("There is no topic {topic:?}.")),
                });
            }
            None
        }
    }
}

fn not_found(message: &str) -> Page {
    Page { found: false, html: layout("Not found", &format!("<p>{}</p>", escape(message))) }
}

/// Topics, and how the server is doing.
async fn overview(context: &ServerContext) -> String {
    let topics = context.storage.list_topics().await;
    let derived: BTreeMap<String, String> =
        context.derived.list(context).await.into_iter().map(|topic| (topic.name, topic.source)).collect();
    let mut body = String::new();
    let servers = context.storage.servers().await.unwrap_or_default();
    let connections = context.open_connections.load(std::sync::atomic::Ordering::Relaxed);
    let _ = write!(
        body,
        "<p id=\"health\">Server {} ({}), version {}: <span class=\"good\">up</span>, {connections} connection(s), {} server(s) in the cluster.</p>",
        context.this_server.id,
        escape(&context.this_server.address),
        escape(&context.this_server.version),
        servers.len().max(1)
    );
    match topics {
        Ok(topics) => {
            let mut stored = Vec::with_capacity(topics.len());
            for topic in &topics {
                let mut bytes = None;
                for partition in 0..topic.partitions {
                    let partition = context.storage.partition(&topic.name, partition).await.ok();
                    if let Some(size) = partition.and_then(|p| p.stored_bytes()) {
                        bytes = Some(bytes.unwrap_or(0) + size);
                    }
                }
                stored.push(bytes);
            }
            let rows: Vec<Vec<String>> = topics
                .iter()
                .zip(stored)
                .map(|(topic, bytes)| {
                    let name = escape(&topic.name);
                    let link = link_segment(&topic.name);
                    let appended: i64 = topic.next_offsets.iter().sum();
                    let retention = match (topic.retention.max_age_ms, topic.retention.max_bytes) {
                        (None, None) => "kept".to_string(),
                        (age, bytes) => {
                            let age = age.map(|ms| format!("{} s", ms / 1000));
                            let bytes = bytes.map(|b| format!("{b} bytes"));
                            [age, bytes].into_iter().flatten().collect::<Vec<_>>().join(", ")
                        }
                    };
                    let derivation =
                        derived.get(&topic.name).map(|source| format!("from {}", escape(source))).unwrap_or_default();
                    vec![
                        format!("<a href=\"/topics/{link}\">{name}</a>"),
                        format!("#{}", topic.partitions),
                        format!("#{appended}"),
                        bytes.map_or_else(String::new, |bytes| format!("#{bytes}")),
                        escape(&retention),
                        derivation,
                        format!("<a href=\"/tail/{link}\">tail</a>"),
                    ]
                })
                .collect();
            body += &table(
                "topics",
                &["topic", "partitions", "records appended", "bytes stored", "retention", "derived", ""],
                &rows,
            );
        }
        Err(error) => {
            let _ = write!(body, "<p class=\"bad\">The topics cannot be listed: {}</p>", escape(&error.to_string()));
        }
    }
    layout("Topics", &body)
}

/// A topic's partitions, and the lag of each consumer id that reads it.
async fn topic_page(context: &ServerContext, name: &str) -> Option<String> {
    let topics = context.storage.list_topics().await.ok()?;
    let topic = topics.into_iter().find(|topic| topic.name == name)?;
    let offsets = context.storage.list_offsets().await.unwrap_or_default();
    let mut rows = Vec::new();
    for (partition, next) in topic.next_offsets.iter().enumerate() {
        let stored = context.storage.partition(name, partition as u32).await.ok();
        let start = stored.as_ref().map_or(0, |p| p.start_offset());
        let bytes = stored.and_then(|p| p.stored_bytes()).map_or_else(String::new, |b| format!("#{b}"));
        rows.push(vec![format!("#{partition}"), format!("#{start}"), format!("#{next}"), bytes]);
    }
    let mut body = table("partitions", &["partition", "first offset", "next offset", "bytes stored"], &rows);
    let readers: Vec<Vec<String>> = offsets
        .iter()
        .filter(|owned| owned.offset.topic == name)
        .map(|owned| {
            let offset = &owned.offset;
            let end = topic.next_offsets.get(offset.partition as usize).copied().unwrap_or(0);
            vec![
                escape(&offset.consumer),
                format!("#{}", offset.partition),
                format!("#{}", offset.offset),
                format!("#{}", (end - offset.offset).max(0)),
            ]
        })
        .collect();
    body += "<h2>Consumers</h2>";
    if readers.is_empty() {
        body += "<p>No consumer id has committed an offset here.</p>";
    } else {
        body += &table("consumers", &["consumer id", "partition", "committed offset", "lag"], &readers);
    }
    let _ = write!(body, "<p><a href=\"/tail/{}\">Tail this topic</a></p>", link_segment(name));
    Some(layout(&format!("Topic {name}"), &body))
}

/// The registry: each module, its kind and ABI, and the derived topics
/// that use it.
async fn smartmodules(context: &ServerContext) -> String {
    let modules = match context.registry.list().await {
        Ok(modules) => modules,
        Err(error) => {
            let body = format!("<p class=\"bad\">The registry cannot be listed: {}</p>", escape(&error.to_string()));
            return layout("SmartModules", &body);
        }
    };
    let derived = context.derived.list(context).await;
    let rows: Vec<Vec<String>> = modules
        .iter()
        .map(|module| {
            let abi = context.registry.module(&module.name).map_or("", |loaded| loaded.abi().name());
            let users: Vec<String> = derived
                .iter()
                .filter(|topic| topic.transforms.iter().any(|invocation| invocation.name() == module.name))
                .map(|topic| escape(&topic.name))
                .collect();
            vec![
                escape(&module.name),
                escape(&format!("{:?}", module.kind).to_lowercase()),
                escape(abi),
                format!("#{}", module.size),
                users.join(", "),
            ]
        })
        .collect();
    layout("SmartModules", &table("smartmodules", &["name", "kind", "ABI", "bytes", "used by"], &rows))
}

/// The connectors the server runs: their state, counters and log's end.
async fn connectors(context: &ServerContext) -> String {
    let listed = context.connectors.metrics().await;
    if listed.is_empty() {
        return layout("Connectors", "<p>This server runs no connectors.</p>");
    }
    let mut body = String::new();
    let rows: Vec<Vec<String>> = listed
        .iter()
        .map(|(info, reported)| {
            let class = if info.status == "running" { "good" } else { "bad" };
            let counts = reported.clone().unwrap_or_default();
            vec![
                escape(&info.name),
                escape(&info.kind),
                escape(&info.topic),
                format!("<span class=\"{class}\">{}</span>", escape(&info.status)),
                format!("#{}", info.restarts),
                format!("#{}", counts.records_in),
                format!("#{}", counts.records_out),
                format!("#{}", counts.failed),
                if counts.lag >= 0 { format!("#{}", counts.lag) } else { String::new() },
            ]
        })
        .collect();
    body += &table(
        "connectors",
        &["name", "type", "topic", "status", "restarts", "records in", "records out", "failed", "lag"],
        &rows,
    );
    for (info, _) in &listed {
        let tail = context.connectors.log_tail(&info.name, LOG_TAIL_BYTES).await.unwrap_or_default();
        let _ =
            write!(body, "<h2>{} log</h2><pre>{}</pre>", escape(&info.name), escape(&String::from_utf8_lossy(&tail)));
    }
    layout("Connectors", &body)
}

/// The live tail's page: records appear as they are appended.
async fn tail_page(context: &ServerContext, topic: &str) -> Option<String> {
    let topics = context.storage.list_topics().await.ok()?;
    topics.iter().find(|info| info.name == topic)?;
    let modules = context.registry.list().await.unwrap_or_default();
    let mut options = String::from("<option value=\"\">(none)</option>");
    for module in &modules {
        let _ = write!(options, "<option value=\"{0}\">{0}</option>", escape(&module.name));
    }
    let body = format!(
        "<p>Records appended to <b>{name}</b> from now on, through <select id=\"module\">{options}</select> \
         <button id=\"start\">Tail</button> <span id=\"state\"></span></p>\
         <table id=\"records\"><tr><th>partition</th><th>offset</th><th>key</th><th>value</th></tr></table>\
         <script>{script}</script>",
        name = escape(topic),
        script = TAIL_SCRIPT.replace("TOPIC", &link_segment(topic)),
    );
    Some(layout(&format!("Tail {topic}"), &body))
}

/// Opens the event stream for the chosen module and adds a row per record.
const TAIL_SCRIPT: &str = "let source=null;\
function start(){if(source)source.close();\
const m=document.getElementById('module').value;\
const t=document.getElementById('records');while(t.rows.length>1)t.deleteRow(1);\
source=new EventSource('/tail/TOPIC/events'+(m?'?module='+encodeURIComponent(m):''));\
source.onopen=()=>{document.getElementById('state').textContent='tailing';};\
source.addEventListener('failed',e=>{document.getElementById('state').textContent=e.data;source.close();});\
source.onmessage=e=>{const r=JSON.parse(e.data);const row=t.insertRow(1);\
for(const v of [r.partition,r.offset,r.key??'',r.value]){row.insertCell().textContent=v;}\
while(t.rows.length>501)t.deleteRow(501);};}\
document.getElementById('start').onclick=start;start();";

/// The body of a live tail: server-sent events, one per record appended
/// to any partition of a topic after it opened, through the modules named;
/// it ends when the client goes away.
pub type TailBody = StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

/// Starts tailing `topic` through `modules` (registered modules, a chain
/// in this order; none for the records as stored); `Err` with what is
/// wrong for a topic or module that does not exist.
pub async fn tail(context: &Arc<ServerContext>, topic: &str, modules: &[String]) -> Result<TailBody, String> {
    let info = context
        .storage
        .list_topics()
        .await
        .map_err(|error| error.to_string())?
        .into_iter()
        .find(|info| info.name == topic)
        .ok_or_else(|| format!("there is no topic {topic:?}"))?;
    context.registry.prepare(modules.iter().map(String::as_str)).await.map_err(|error| error.to_string())?;
    if let Some(missing) = modules.iter().find(|name| context.registry.module(name).is_none()) {
        return Err(crate::registry::RegistryError::NotFound(missing.clone()).to_string());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(TAIL_QUEUE);
    for partition in 0..info.partitions {
        let (context, sender, topic, modules) =
            (Arc::clone(context), sender.clone(), topic.to_string(), modules.to_vec());
        tokio::spawn(async move {
            if let Err(error) = tail_partition(&context, &topic, partition, &modules, &sender).await {
                let event = format!("event: failed\ndata: {}\n\n", error.replace('\n', " "));
                let _ = sender.send(Ok(Frame::data(Bytes::from(event)))).await;
            }
        });
    }
    // A comment now, so the browser sees the stream open at once.
    let _ = sender.try_send(Ok(Frame::data(Bytes::from_static(b": tailing\n\n"))));
    let mut receiver = receiver;
    let events = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Ok(StreamBody::new(futures::StreamExt::boxed(events)))
}

/// Follows one partition from its end, sending each record (through the
/// modules) as an event, until the client goes away.
async fn tail_partition(
    context: &Arc<ServerContext>,
    topic: &str,
    partition: u32,
    modules: &[String],
    sender: &tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) -> Result<(), String> {
    let stored = context.storage.partition(topic, partition).await.map_err(|error| error.to_string())?;
    let (_memory, chain) = if modules.is_empty() {
        (None, None)
    } else {
        let memory =
            crate::connection::MemoryReservation::take(context, modules.len()).map_err(|error| error.to_string())?;
        let invocations = modules.iter().map(|name| SmartModuleInvocation::predefined(name.as_str()));
        let chain =
            context.chain_builder(invocations, ErrorPolicy::Skip).spawn().await.map_err(|error| error.to_string())?;
        (Some(memory), Some(chain))
    };
    let mut offset = stored.next_offset();
    let mut watermark = stored.subscribe();
    let mut reader = Arc::clone(&stored).reader(offset);
    loop {
        let batches = reader.next(TAIL_READ_BYTES).await.map_err(|error| error.to_string())?;
        if batches.is_empty() {
            let behind = *watermark.borrow() > offset;
            tokio::select! {
                changed = watermark.wait_for(|next| *next > offset) => {
                    if changed.is_err() { return Ok(()); }
                }
                _ = sender.closed() => return Ok(()),
                // Readable shortly (a replica behind its leader).
                _ = tokio::time::sleep(Duration::from_millis(200)), if behind => {}
            }
            continue;
        }
        for batch in batches {
            let batch = context.inflater.open(batch).await.map_err(|error| error.to_string())?.trimmed_to(offset);
            offset = batch.next_offset();
            let batch = match &chain {
                Some(chain) => chain.process(batch).await.map_err(|error| error.to_string())?.batch,
                None => batch,
            };
            for record in batch.records() {
                let event = serde_json::json!({
                    "partition": partition,
                    "offset": record.offset,
                    "key": record.key.map(|key| String::from_utf8_lossy(key).into_owned()),
                    "value": String::from_utf8_lossy(record.value),
                });
                if sender.send(Ok(Frame::data(Bytes::from(format!("data: {event}\n\n"))))).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_html_and_paths_are_decoded() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(percent_decode("my%2Dtopic+x%zz%4"), "my-topic x%zz%4");
        assert_eq!(percent_decode(&link_segment("a b/é")), "a b/é");
    }
}
