//! Fluvio's quick start, as its docs write it: the shortcuts
//! `fluvio::producer` and `fluvio::consumer`, on the cluster the machine
//! uses (`$FLUVIO_ADDR`, or the local cluster `fluvio cluster start` runs).
//!
//! `FLUVIO_ADDR=127.0.0.1:9003 quickstart greetings`

use fluvio::{Offset, RecordKey};
use futures::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = std::env::args().nth(1).unwrap_or_else(|| "greetings".to_string());
    let producer = fluvio::producer(topic.as_str()).await?;
    producer.send(RecordKey::NULL, "Hello, Fluvio!").await?;
    producer.flush().await?;

    let consumer = fluvio::consumer(topic.as_str(), 0).await?;
    let mut stream = consumer.stream(Offset::from_end(1)).await?;
    if let Some(Ok(record)) = stream.next().await {
        let key = record.get_key().map(|key| key.as_utf8_lossy_string().into_owned());
        let value = record.get_value().as_utf8_lossy_string();
        println!("Got record: key={key:?}, value={value}");
    }
    Ok(())
}
