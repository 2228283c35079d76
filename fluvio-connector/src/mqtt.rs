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
//!   acknowledge: received        # received (default) or stored; see below
//! ```
//!
//! The session is persistent (the client id is fixed and the session not
//! cleaned), so QoS 1 messages published while the connector is away are
//! delivered when it comes back. It uses rumqttc, a well-kept MQTT client.
//!
//! A QoS 1 message is acknowledged to the broker only once the connector
//! has it in hand, never while it is still in the client's buffers, so a
//! stop (SIGTERM) loses nothing: what was taken is sent before the
//! connector exits, and the broker delivers the rest again.
//! `acknowledge: received` (default) acknowledges as a message is taken;
//! `acknowledge: stored` waits until the cluster has stored the record, so
//! that even a connector killed with SIGKILL loses nothing (the broker
//! delivers unacknowledged messages again: at least once). `stored` holds
//! each message unacknowledged for a producer round trip, and brokers cap
//! unacknowledged messages per client (Mosquitto: `max_inflight_messages`,
//! 20 by default), so raise that cap with it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};

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
    acknowledge_stored: bool,
    session: Option<(AsyncClient, EventLoop)>,
    acks: PendingAcks,
}

/// Room in rumqttc's request queue, which holds this source's
/// acknowledgements until the event loop sends them.
const REQUEST_QUEUE: usize = 10_000;

/// Acknowledgements on their way to the broker. rumqttc's request queue is
/// bounded and is emptied only while the event loop is polled, and after a
/// reconnection the broker can send its backlog faster than acknowledgements
/// leave. One that does not fit waits here, in order, and is retried before
/// every poll. None is ever dropped: a dropped one would hold one of the
/// broker's in-flight slots for the rest of the session, and enough of them
/// stop delivery altogether.
#[derive(Clone, Default)]
struct PendingAcks(Arc<Mutex<VecDeque<Publish>>>);

impl PendingAcks {
    fn ack(&self, client: &AsyncClient, publish: Publish) {
        let mut waiting = self.0.lock().expect("acks lock");
        if waiting.is_empty() && client.try_ack(&publish).is_ok() {
            return;
        }
        waiting.push_back(publish);
    }

    /// Moves waiting acknowledgements into the client's queue; `true` when
    /// none is left waiting.
    fn flush(&self, client: &AsyncClient) -> bool {
        let mut waiting = self.0.lock().expect("acks lock");
        while let Some(publish) = waiting.front() {
            if client.try_ack(publish).is_err() {
                return false;
            }
            waiting.pop_front();
        }
        true
    }

    /// A new session: the broker delivers again what was not acknowledged.
    fn clear(&self) {
        self.0.lock().expect("acks lock").clear();
    }
}

impl std::fmt::Debug for MqttSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSource").field("broker", &self.broker).field("topics", &self.topics).finish()
    }
}

/// A broker's address and the credentials its URL carries.
#[derive(Debug, PartialEq, Eq)]
struct BrokerAddress {
    host: String,
    port: u16,
    /// `user:password@` (or `user@`), for the broker's login.
    credentials: Option<(String, String)>,
}

/// Splits `mqtt://[user[:password]@]host:port` (or `tcp://`, or a bare
/// `host:port`).
fn broker_address(url: &str) -> Option<BrokerAddress> {
    let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let (credentials, address) = match authority.rsplit_once('@') {
        Some((user_info, address)) => {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            (Some((user.to_string(), password.to_string())), address)
        }
        None => (None, authority),
    };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().ok()?),
        None if !address.is_empty() => (address.to_string(), 1883),
        None => return None,
    };
    (!host.is_empty()).then_some(BrokerAddress { host, port, credentials })
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
            "acknowledge",
        ])?;
        let url = section.string("url")?;
        if url.starts_with("mqtts://") || url.starts_with("ssl://") {
            return Err(section.invalid("url", "TLS brokers are not supported yet; use mqtt://"));
        }
        let BrokerAddress { host, port, credentials } = broker_address(&url)
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
        let acknowledge_stored = match section.opt_string("acknowledge")?.as_deref() {
            None | Some("received") => false,
            Some("stored") => true,
            Some(other) => return Err(section.invalid("acknowledge", format!("{other:?} is not received or stored"))),
        };
        // Under an egress list the broker must be on it, and the client
        // connects to the address that was checked.
        let connect_host =
            match crate::egress::EgressPolicy::from_env().map_err(|error| section.invalid("url", error))? {
                None => host.clone(),
                Some(policy) => {
                    let addresses = policy.check(&host, port).map_err(|error| section.invalid("url", error))?;
                    addresses.first().map_or_else(|| host.clone(), |address| address.ip().to_string())
                }
            };
        let mut options = MqttOptions::new(client_id, connect_host, port);
        // Acknowledged by `next` or after the cluster stored the record,
        // never by the client on its own (see the module docs).
        options.set_manual_acks(true);
        options.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
        options.set_clean_session(false);
        options.set_max_packet_size(max_packet, max_packet);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        Ok(MqttSource {
            broker: format!("the MQTT broker at {host}:{port}"),
            options,
            topics,
            qos,
            topic_as_key: section.opt_bool("topic-as-key")?.unwrap_or(false),
            json_output,
            acknowledge_stored,
            session: None,
            acks: PendingAcks::default(),
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
        SourceRecord::new(key, value)
    }
}

impl Source for MqttSource {
    async fn close(&mut self) {
        self.drain_and_disconnect().await;
    }

    async fn connect(&mut self) -> Result<(), ConnectorError> {
        self.session = None;
        self.acks.clear();
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), REQUEST_QUEUE);
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
            let Some((client, eventloop)) = self.session.as_mut() else {
                return Err(self.transient("not connected"));
            };
            self.acks.flush(client);
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let record = self.record(&publish.topic, &publish.payload);
                    let Some((client, _)) = self.session.as_ref() else { unreachable!("polled just now") };
                    if self.acknowledge_stored {
                        let (client, acks) = (client.clone(), self.acks.clone());
                        return Ok(Some(
                            record.acknowledged_by(crate::Acknowledgement::new(
                                async move { acks.ack(&client, publish) },
                            )),
                        ));
                    }
                    // No await from here to the return: once acknowledged,
                    // the record reaches the runtime.
                    self.acks.ack(client, publish);
                    return Ok(Some(record));
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

impl MqttSource {
    /// Sends the acknowledgements still queued, then disconnects.
    async fn drain_and_disconnect(&mut self) {
        let Some((client, mut eventloop)) = self.session.take() else { return };
        let acks = self.acks.clone();
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while !acks.flush(&client) {
                if eventloop.poll().await.is_err() {
                    return;
                }
            }
            // Requests go out in order: the queued acknowledgements first.
            if client.try_disconnect().is_err() {
                return;
            }
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(broker = %self.broker, "the broker did not take the last acknowledgements within 5 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Option<BrokerAddress> {
        let credentials = credentials.map(|(user, password)| (user.to_string(), password.to_string()));
        Some(BrokerAddress { host: host.into(), port, credentials })
    }

    #[test]
    fn broker_addresses_parse() {
        assert_eq!(broker_address("mqtt://127.0.0.1:1884"), address("127.0.0.1", 1884, None));
        assert_eq!(broker_address("tcp://broker"), address("broker", 1883, None));
        assert_eq!(broker_address("broker:99/path"), address("broker", 99, None));
        assert_eq!(broker_address("mqtt://host:notaport"), None);
        assert_eq!(broker_address("mqtt://"), None);
        assert_eq!(broker_address("mqtt://u:p@ss@"), None);
    }

    #[test]
    fn credentials_in_the_url_log_in_and_are_never_shown() {
        assert_eq!(broker_address("mqtt://ops:pa:ss@broker:1884"), address("broker", 1884, Some(("ops", "pa:ss"))));
        assert_eq!(broker_address("mqtt://ops@broker"), address("broker", 1883, Some(("ops", ""))));
        let config = ConnectorConfig::parse(
            "apiVersion: 0.1.0\nmeta: { version: 0.1.0, name: m, type: mqtt-source, topic: t, secrets: [ { name: MQTT_PASSWORD } ] }\nmqtt: { url: \"mqtt://ops:${{ secrets.MQTT_PASSWORD }}@127.0.0.1:1884\", topic: a }\n",
            std::path::Path::new("mqtt.yaml"),
            &crate::config::Secrets::parse("MQTT_PASSWORD=hunter2-secret\n", std::path::Path::new("s.env")).unwrap(),
        )
        .unwrap();
        let source = MqttSource::from_config(&config).unwrap();
        let shown = format!("{source:?} {}", source.transient("down"));
        assert!(!shown.contains("hunter2-secret") && !shown.contains("ops:"), "{shown}");
        assert!(shown.contains("127.0.0.1:1884"), "{shown}");
        assert_eq!(
            source.options.credentials().map(|login| (login.username, login.password)),
            Some(("ops".to_string(), "hunter2-secret".to_string()))
        );
    }
}
