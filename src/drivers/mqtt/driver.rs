//! The MQTT driver: attaches the device to a shared broker link, hands the link's
//! messages to the device's [`Ingest`], and publishes commands with QoS 1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::QoS;
use sha2::{Digest, Sha256};

use super::config::MqttConfig;
use super::ingest::Ingest;
use super::link::{self, Attachment, Filter, LinkKey, LinkSettings, Route};
use super::payload;
use super::sparkplug::{self, MessageType};
use super::tls;
use super::topic;
use crate::domain::{OpenedSecurity, Tag, Timestamp, Value};
use crate::drivers::{Driver, DriverSink, Error, LinkEvent, PlanSummary, WriteReport, scaling};

pub struct MqttDriver {
    config: Arc<MqttConfig>,
    security: OpenedSecurity,
    ingest: Arc<Mutex<Ingest>>,
    attachment: Option<Attachment>,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

fn lock(m: &Mutex<Ingest>) -> std::sync::MutexGuard<'_, Ingest> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MqttDriver {
    pub fn new(config: MqttConfig, security: OpenedSecurity) -> Self {
        let config = Arc::new(config);
        let ingest = Ingest::new(config.clone());
        MqttDriver {
            config,
            security,
            ingest: Arc::new(Mutex::new(ingest)),
            attachment: None,
        }
    }

    fn settings(&self, scope: u64) -> Result<LinkSettings, Error> {
        let c = &self.config;
        let creds = self.security.credentials.as_ref();
        let password = creds
            .and_then(|c| c.password.as_ref())
            .map(|p| p.expose().to_string());
        let tls_config = match &self.security.tls {
            Some(t) => Some(tls::client_config(t, c.tls_server_name.as_deref())?),
            None if self.security.require_tls => {
                return Err(Error::Config(
                    "require_tls is set but the device has no [security] tls settings".into(),
                ));
            }
            None => None,
        };
        let tls_key = self.security.tls.as_ref().map(|t| {
            vec![
                t.ca_file.clone().unwrap_or_default(),
                t.cert_file.clone().unwrap_or_default(),
                t.key_file
                    .as_ref()
                    .map(|k| k.expose().to_string())
                    .unwrap_or_default(),
                c.tls_server_name.clone().unwrap_or_default(),
            ]
        });
        Ok(LinkSettings {
            key: LinkKey {
                host: c.host.clone(),
                port: c.port,
                client_id: c.client_id.clone(),
                username: creds.map(|c| c.username.clone()),
                password_digest: password
                    .as_ref()
                    .map(|p| Sha256::digest(p.as_bytes()).into()),
                tls: tls_key,
                keep_alive_secs: c.keep_alive_secs,
                clean_session: c.clean_session,
                connect_timeout_ms: c.connect_timeout_ms,
                reconnect: (c.reconnect_min_ms, c.reconnect_max_ms),
                own: c.own_connection.then(link::next_id),
                scope,
            },
            password,
            tls: tls_config,
        })
    }

    fn attachment(&self) -> Result<&Attachment, Error> {
        self.attachment
            .as_ref()
            .ok_or_else(|| Error::Disconnected("device not connected".into()))
    }
}

#[async_trait]
impl Driver for MqttDriver {
    fn plan(&mut self, tags: &[Tag], _default_period_ms: u64) -> Result<PlanSummary, Error> {
        let mut ingest = lock(&self.ingest);
        if let Some(e) = &ingest.broken {
            return Err(e.clone());
        }
        ingest.add(tags)?;
        // Pushed, not polled: no poll groups.
        Ok(PlanSummary {
            by_exception: ingest.sparkplug(),
            ..PlanSummary::default()
        })
    }

    fn manages_link(&self) -> bool {
        true
    }

    fn add_tags(&mut self, tags: &[Tag]) -> Result<(), Error> {
        lock(&self.ingest).add(tags)
    }

    async fn connect(&mut self, sink: DriverSink) -> Result<(), Error> {
        if self.attachment.is_some() {
            return Ok(());
        }
        let settings = self.settings(sink.scope)?;
        let filters: Vec<Filter> = {
            let mut ingest = lock(&self.ingest);
            ingest.set_sink(sink.clone());
            let share = if ingest.sparkplug() {
                None
            } else {
                self.config.share_group.as_deref()
            };
            ingest
                .filters()
                .into_iter()
                .map(|(pattern, q)| Filter {
                    subscribe: topic::subscription(&pattern, share),
                    pattern,
                    qos: qos(q),
                })
                .collect()
        };
        if filters.is_empty() {
            return Err(Error::Config(
                "nothing to subscribe to: give the device `topics`, tags with `topic=`, `templates` or `sparkplug`".into(),
            ));
        }
        let ingest = self.ingest.clone();
        let link_sink = sink.link.clone();
        let route = Route {
            filters,
            on_message: Box::new(move |topic, payload, client| {
                lock(&ingest).handle(topic, payload, client);
            }),
            on_link: Box::new(move |event: LinkEvent| link_sink(event)),
        };
        self.attachment = Some(link::attach(settings, route));
        Ok(())
    }

    async fn write(&mut self, tag: &Tag, value: &Value) -> Result<WriteReport, Error> {
        let s = &tag.spec;
        if !s.writable {
            return Err(Error::NotWritable(s.name.clone()));
        }
        let bad_value = |reason: String| Error::BadValue {
            tag: s.name.clone(),
            value: value.to_json().to_string(),
            reason,
        };
        let raw = scaling::to_raw(value, s.data_type, s.scale, s.offset).map_err(bad_value)?;
        let now = Timestamp::now();
        let (topic, payload) = {
            let ingest = lock(&self.ingest);
            if let Some(sp) = &self.config.sparkplug {
                let m = ingest
                    .metric_tag(tag.id)
                    .ok_or_else(|| Error::Config(format!("tag {} is not mapped", s.name)))?;
                let datatype = ingest.declared_type(&m.metric).ok_or_else(|| {
                    Error::Refused(format!(
                        "metric `{}` is not declared by the node's current birth; no command can be typed for it",
                        m.metric
                    ))
                })?;
                let mv = sparkplug::encode_value(&raw, datatype).ok_or_else(|| {
                    bad_value(format!(
                        "does not fit the metric's Sparkplug data type {datatype}"
                    ))
                })?;
                let kind = if sp.device.is_some() {
                    MessageType::DCmd
                } else {
                    MessageType::NCmd
                };
                let topic = sparkplug::topic(&sp.group, kind, &sp.node, sp.device.as_deref());
                let ms = (now.0 / 1000).max(0) as u64;
                (topic, sparkplug::command(&m.metric, datatype, mv, ms))
            } else {
                let t = ingest
                    .topic_tag(tag.id)
                    .ok_or_else(|| Error::Config(format!("tag {} is not mapped", s.name)))?;
                let topic = match (&t.command, &self.config.command_topic) {
                    (Some(c), _) => c.clone(),
                    (None, Some(template)) => template.replace("{tag}", &s.name),
                    (None, None) => return Err(Error::NotWritable(s.name.clone())),
                };
                topic::check_topic(&topic).map_err(Error::Config)?;
                let body =
                    payload::render_command(&self.config.command_payload, &s.name, &raw, now);
                (topic, body.into_bytes())
            }
        };
        self.attachment()?
            .publish_confirmed(
                &topic,
                payload,
                Duration::from_millis(self.config.command_timeout_ms),
            )
            .await?;
        Ok(WriteReport { confirmed: None })
    }

    async fn disconnect(&mut self) {
        self.attachment = None;
    }
}
