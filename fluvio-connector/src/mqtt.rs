//! `mqtt-source`: subscribes to topic filters on an MQTT broker and turns
//! each message into a record.
//!
//! ```yaml
//! mqtt:
//!   url: mqtt://127.0.0.1:1883
//!   topics: [ "sensors/#" ]      # or `topic: sensors/#`
//!   qos: 1                       # 0 or 1 (default 1)
//!   client-id: my-mqtt-source    # default: the connector's name
//!   topic-as-key: true           # the MQTT topic becomes the record key
//!   keep-alive: 30s
//!   max-packet-size: 1MiB
//!   payload_output_type: binary  # binary (default): the payload is the value;
//!                                # json: {"mqtt_topic": ..., "payload": ...} as Fluvio's connector writes
//! ```
//!
//! The session is persistent (the client id is fixed and the session not
//! cleaned), so QoS 1 messages published while the connector is away are
//! delivered when it comes back. It uses rumqttc, a well-kept MQTT client.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use crate::config::{ConfigError, ConnectorConfig};
use crate::connector::{ConnectorError, Source, SourceRecord};

/// The `mqtt-source` connector.
pub struct MqttSource {
    broker: String,
    options: MqttOptions,
    topics: Vec<String>,
    qos: QoS,
    topic_as_key: bool,
    json_output: bool,
    session: Option<(AsyncClient, EventLoop)>,
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource").field("broker", &self.broker).field("topics", &self.topics).finish()
    }
}

/// Splits `mqtt://host:port` (or `tcp://`, or a bare `host:port`).
fn broker_address(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).unwrap_or(url);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !rest.is_empty() => Some((rest.to_string(), 1883)),
        None => None,
    }
}

impl MqttSource {
    /// Reads the `mqtt` section of a config.
    pub fn from_config(config: &ConnectorConfig) -> Result<MqttSource, ConfigError> {
        let section = config.section()?;
        section.only(&[
            "url",
            "topic",
            "topics",
            "qos",
            "client-id",
            "client_id",
            "topic-as-key",
            "keep-alive",
            "timeout",
            "max-packet-size",
            "payload_output_type",
            "payload-output-type",
        ])?;
        let url = section.string("url")?;
        if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(section.invalid("url", "TLS brokers are not supported yet; use mqtt://"));
        }
        let (host, port) = broker_address(&url)
            .ok_or_else(|| section.invalid("url", format!("{url:?} is not an MQTT address like mqtt://host:1883")))?;
        let mut topics = section.opt_strings("topics")?.unwrap_or_default();
        topics.extend(section.opt_strings("topic")?.unwrap_or_default());
        if topics.is_empty() {
            return Err(section.invalid("topics", "give at least one topic filter to subscribe to"));
        }
        let qos = match section.opt_u64("qos")?.unwrap_or(1) {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            other => return Err(section.invalid("qos", format!("QoS {other} is not supported; use 0 or 1"))),
        };
        let client_id = match section.opt_string("client-id")? {
            Some(id) => id,
            None => section.opt_string("client_id")?.unwrap_or_else(|| config.name.clone()),
        };
        let keep_alive = match section.opt_duration("keep-alive")? {
            Some(keep_alive) => keep_alive,
            None => section.opt_duration("timeout")?.unwrap_or(Duration::from_secs(30)),
        };
        let max_packet = section.opt_size("max-packet-size")?.unwrap_or(1 << 20) as usize;
        let output = match section.opt_string("payload_output_type")? {
            Some(output) => Some(output),
            None => section.opt_string("payload-output-type")?,
        };
        let json_output = match output.as_deref() {
            None | Some("binary") => false,
            Some("json") => true,
            Some(other) => {
                return Err(section.invalid("payload_output_type", format!("{other:?} is not binary or json")));
            }
        };
        let mut options = MqttOptions::new(client_id, host.clone(), port);
        options.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
        options.set_clean_session(false);
        options.set_max_packet_size(max_packet, max_packet);
        Ok(MqttSource {
            broker: format!("the MQTT broker at {host}:{port}"),
            options,
            topics,
            qos,
            topic_as_key: section.opt_bool("topic-as-key")?.unwrap_or(false),
            json_output,
            session: None,
        })
    }

    fn transient(&self, reason: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::Transient { system: self.broker.clone(), reason: reason.to_string() }
    }

    fn record(&self, topic: &str, payload: &[u8]) -> SourceRecord {
        let key = self.topic_as_key.then(|| topic.as_bytes().to_vec());
        let value = if self.json_output {
            let payload = serde_json::from_slice::<serde_json::Value>(payload)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()));
            serde_json::json!({ "mqtt_topic": topic, "payload": payload }).to_string().into_bytes()
        } else {
            payload.to_vec()
        };
        SourceRecord { key, value }
    }
}

impl Source for MqttSource {
    async fn connect(&mut self) -> Result<(), ConnectorError> {
        self.session = None;
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1024);
        // Wait for the broker's answer, so that an unreachable broker is
        // reported (and retried) here.
        let connected = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => continue,
                    Err(error) => return Err(error),
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(self.transient(error)),
            Err(_) => return Err(self.transient("no answer within 10 s")),
        }
        // `self` holds the event loop, which is not `Sync`: borrow only
        // the fields across the awaits.
        for topic in &self.topics {
            if let Err(error) = client.subscribe(topic.clone(), self.qos).await {
                return Err(ConnectorError::Transient { system: self.broker.clone(), reason: error.to_string() });
            }
        }
        tracing::info!(broker = %self.broker, topics = ?self.topics, "subscribed");
        self.session = Some((client, eventloop));
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<SourceRecord>, ConnectorError> {
        loop {
            let Some((_, eventloop)) = self.session.as_mut() else {
                return Err(self.transient("not connected"));
            };
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    return Ok(Some(self.record(&publish.topic, &publish.payload)));
                }
                Ok(_) => continue,
                Err(error) => {
                    self.session = None;
                    return Err(self.transient(error));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse() {
        assert_eq!(broker_address("mqtt://127.0.0.1:1884"), Some(("127.0.0.1".into(), 1884)));
        assert_eq!(broker_address("tcp://broker"), Some(("broker".into(), 1883)));
        assert_eq!(broker_address("broker:99/path"), Some(("broker".into(), 99)));
        assert_eq!(broker_address("mqtt://host:notaport"), None);
        assert_eq!(broker_address("mqtt://"), None);
    }
}
