//! MQTT tag addresses: `topic=FILTER;value=/json/pointer;time=/ptr;quality=/ptr;command=TOPIC`
//! for JSON and plain payloads, `metric=NAME` for Sparkplug B.

use super::config::MqttConfig;
use super::topic;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttAddress {
    Topic {
        /// The topic (or a filter: the tag takes every matching topic's value).
        topic: String,
        /// JSON pointer of the value; None: the payload is the value (plain text).
        value: Option<String>,
        /// Pointers of the source timestamp and the quality (else the device's).
        time: Option<String>,
        quality: Option<String>,
        /// Where commands to the tag are published (else the device's `command_topic`).
        command: Option<String>,
    },
    /// A Sparkplug B metric of the device's node or device.
    Metric { name: String },
}

fn pointer(key: &str, v: &str) -> Result<String, String> {
    if v.is_empty() || v.starts_with('/') {
        Ok(v.to_string())
    } else {
        Err(format!(
            "{key}=`{v}` is not a JSON pointer (`/a/b`, `/list/0`; empty for the whole payload)"
        ))
    }
}

impl MqttAddress {
    /// Parses an address; `sparkplug` says whether the device is a Sparkplug one.
    pub fn parse(address: &str, sparkplug: bool) -> Result<Self, String> {
        if let Some(name) = address.strip_prefix("metric=") {
            if !sparkplug {
                return Err("`metric=` addresses need the device's `sparkplug` settings".into());
            }
            if name.is_empty() {
                return Err("`metric=` needs the metric's name".into());
            }
            return Ok(MqttAddress::Metric {
                name: name.to_string(),
            });
        }
        if sparkplug {
            return Err(format!(
                "`{address}`: tags of a Sparkplug device are `metric=NAME`"
            ));
        }
        let mut topic_ = None;
        let (mut value, mut time, mut quality, mut command) = (None, None, None, None);
        for part in address.split(';') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("`{part}`: expected KEY=VALUE (topic, value, time, quality, command)")
            })?;
            let slot = match k.trim() {
                "topic" => {
                    topic::check_filter(v)?;
                    &mut topic_
                }
                "value" => {
                    value = Some(pointer(k, v)?);
                    continue;
                }
                "time" => &mut time,
                "quality" => &mut quality,
                "command" => {
                    topic::check_topic(v)?;
                    &mut command
                }
                other => {
                    return Err(format!(
                        "unknown key `{other}` (topic, value, time, quality, command)"
                    ));
                }
            };
            if slot.is_some() {
                return Err(format!("`{k}` given twice"));
            }
            *slot = Some(v.to_string());
        }
        if let Some(t) = &time {
            pointer("time", t)?;
        }
        if let Some(q) = &quality {
            pointer("quality", q)?;
        }
        let topic = topic_.ok_or("an MQTT address needs `topic=`")?;
        Ok(MqttAddress::Topic {
            topic,
            value,
            time,
            quality,
            command,
        })
    }

    /// Whether a write to the tag has somewhere to go.
    pub fn commandable(&self, config: &MqttConfig) -> bool {
        match self {
            MqttAddress::Topic { command, .. } => {
                command.is_some() || config.command_topic.is_some()
            }
            MqttAddress::Metric { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            MqttAddress::parse("topic=a/+/c;value=/x/0;time=/ts;command=a/set", false),
            Ok(MqttAddress::Topic {
                topic: "a/+/c".into(),
                value: Some("/x/0".into()),
                time: Some("/ts".into()),
                quality: None,
                command: Some("a/set".into()),
            })
        );
        assert_eq!(
            MqttAddress::parse("metric=Node Control/Rebirth", true),
            Ok(MqttAddress::Metric {
                name: "Node Control/Rebirth".into()
            })
        );
        for (bad, sp) in [
            ("value=/x", false),
            ("topic=a;value=x", false),
            ("topic=a;topic=b", false),
            ("topic=a/#/b", false),
            ("topic=a;command=a/+", false),
            ("topic=a;colour=red", false),
            ("topic", false),
            ("metric=x", false),
            ("metric=", true),
            ("topic=a", true),
        ] {
            assert!(MqttAddress::parse(bad, sp).is_err(), "{bad}");
        }
    }
}
