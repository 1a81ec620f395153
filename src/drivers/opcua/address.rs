//! OPC UA tag addresses: a NodeId in the standard string form, by namespace index
//! (`ns=2;s=Temp_0`, `ns=3;i=1001`, `i=2258`) or by namespace URI
//! (`nsu=urn:plant;s=Temp_0`, resolved against the server's namespace array at
//! connect so that indexes may move), optionally followed by `|` and monitoring
//! options: `ns=2;s=Temp_0|sampling=250;deadband=1%;queue=5;mode=poll`.

use std::fmt;
use std::str::FromStr;

use opcua::types::{Identifier, NodeId};

/// The namespace of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    Index(u16),
    Uri(String),
}

/// A server-side deadband on a monitored item (DataChangeFilter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deadband {
    /// In the node's raw units.
    Absolute(f64),
    /// Percent of the node's EURange (the server must declare one).
    Percent(f64),
}

/// Subscribe (the server reports changes) or poll with bulk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Subscribe,
    Poll,
}

/// Monitoring options of one tag; absent ones come from the device.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ItemOptions {
    /// Sampling (and publishing) interval in ms; default the device's `poll_ms`.
    pub sampling_ms: Option<u64>,
    pub deadband: Option<Deadband>,
    pub queue: Option<u32>,
    pub mode: Mode,
}

/// A parsed tag address.
#[derive(Debug, Clone, PartialEq)]
pub struct OpcuaAddress {
    pub namespace: Namespace,
    pub identifier: Identifier,
    pub options: ItemOptions,
}

impl OpcuaAddress {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        // Options follow the last `|` when what follows reads as options; a string
        // identifier may itself contain `|`.
        let (node, options) = match text.rsplit_once('|') {
            Some((node, opts)) => match parse_options(opts) {
                Ok(o) => (node, o),
                Err(e) if opts.contains('=') && looks_like_options(opts) => return Err(e),
                Err(_) => (text, ItemOptions::default()),
            },
            None => (text, ItemOptions::default()),
        };
        let (namespace, id) = if let Some(rest) = node.strip_prefix("nsu=") {
            let (uri, id) = rest.split_once(';').ok_or_else(|| {
                format!("`{node}`: nsu=<uri> must be followed by `;` and the identifier")
            })?;
            if uri.is_empty() {
                return Err(format!("`{node}`: empty namespace URI"));
            }
            (
                Namespace::Uri(uri.replace("%3b", ";").replace("%25", "%")),
                id,
            )
        } else if let Some(rest) = node.strip_prefix("ns=") {
            let (ns, id) = rest.split_once(';').ok_or_else(|| {
                format!("`{node}`: ns=<index> must be followed by `;` and the identifier")
            })?;
            let ns = ns
                .parse::<u16>()
                .map_err(|_| format!("`{node}`: namespace index `{ns}` is not 0-65535"))?;
            (Namespace::Index(ns), id)
        } else {
            (Namespace::Index(0), node)
        };
        let identifier = Identifier::from_str(id).map_err(|()| {
            format!(
                "`{node}` is not a NodeId: expected i=<number>, s=<string>, g=<guid> or b=<base64> after the namespace (ns=2;s=Temp_0, nsu=urn:x;i=1001)"
            )
        })?;
        if matches!(&identifier, Identifier::String(s) if s.is_empty()) {
            return Err(format!("`{node}`: empty string identifier"));
        }
        Ok(OpcuaAddress {
            namespace,
            identifier,
            options,
        })
    }

    /// The NodeId on a server whose namespace array is `namespaces`.
    pub fn resolve(&self, namespaces: &[String]) -> Result<NodeId, String> {
        let ns = match &self.namespace {
            Namespace::Index(i) => *i,
            Namespace::Uri(uri) => namespaces
                .iter()
                .position(|n| n == uri)
                .and_then(|i| u16::try_from(i).ok())
                .ok_or_else(|| format!("the server has no namespace `{uri}`"))?,
        };
        Ok(NodeId::new(ns, self.identifier.clone()))
    }

    /// The node as written, without options.
    pub fn node_text(&self) -> String {
        let id = self.identifier.to_string();
        match &self.namespace {
            Namespace::Index(0) => id,
            Namespace::Index(i) => format!("ns={i};{id}"),
            Namespace::Uri(u) => format!("nsu={};{id}", u.replace('%', "%25").replace(';', "%3b")),
        }
    }
}

impl fmt::Display for OpcuaAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.node_text())
    }
}

const KEYS: [&str; 4] = ["sampling", "deadband", "queue", "mode"];

fn looks_like_options(text: &str) -> bool {
    text.split(';')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.trim()))
        .any(|k| KEYS.contains(&k))
}

fn parse_options(text: &str) -> Result<ItemOptions, String> {
    let mut o = ItemOptions::default();
    for kv in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("option `{kv}`: expected key=value"))?;
        let v = v.trim();
        match k.trim() {
            "sampling" => {
                let ms = v.strip_suffix("ms").unwrap_or(v);
                o.sampling_ms = Some(
                    ms.parse::<u64>()
                        .map_err(|_| format!("sampling=`{v}`: a period in ms (sampling=250)"))?,
                );
            }
            "deadband" => {
                let (num, pct) = match v.strip_suffix('%') {
                    Some(n) => (n, true),
                    None => (v, false),
                };
                let x = num
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .ok_or_else(|| {
                        format!("deadband=`{v}`: a number >= 0, or a percent (deadband=2%)")
                    })?;
                if pct && x > 100.0 {
                    return Err(format!("deadband=`{v}`: a percent deadband is 0-100 %"));
                }
                o.deadband = Some(if pct {
                    Deadband::Percent(x)
                } else {
                    Deadband::Absolute(x)
                });
            }
            "queue" => {
                o.queue = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|q| *q > 0)
                        .ok_or_else(|| format!("queue=`{v}`: a queue size > 0"))?,
                );
            }
            "mode" => {
                o.mode = match v {
                    "subscribe" => Mode::Subscribe,
                    "poll" => Mode::Poll,
                    _ => return Err(format!("mode=`{v}`: `subscribe` or `poll`")),
                };
            }
            other => {
                return Err(format!(
                    "unknown option `{other}` (sampling, deadband, queue, mode)"
                ));
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_and_options_parse() {
        let a = OpcuaAddress::parse("ns=2;s=Temp_0").expect("string id");
        assert_eq!(a.namespace, Namespace::Index(2));
        assert_eq!(a.resolve(&[]).expect("index"), NodeId::new(2, "Temp_0"));
        assert_eq!(a.node_text(), "ns=2;s=Temp_0");
        let a = OpcuaAddress::parse("ns=3;i=1001").expect("numeric");
        assert_eq!(a.resolve(&[]).expect("index"), NodeId::new(3, 1001u32));
        let a = OpcuaAddress::parse("i=2258").expect("ns 0");
        assert_eq!(a.resolve(&[]).expect("index"), NodeId::new(0, 2258u32));
        let a = OpcuaAddress::parse("nsu=urn:plant;s=Pump|1").expect("uri, pipe in id");
        assert_eq!(a.options, ItemOptions::default());
        let ns = vec![
            "http://opcfoundation.org/UA/".to_string(),
            "urn:x".into(),
            "urn:plant".into(),
        ];
        assert_eq!(a.resolve(&ns).expect("uri"), NodeId::new(2, "Pump|1"));
        assert!(
            a.resolve(&ns[..2])
                .expect_err("missing")
                .contains("urn:plant")
        );
        assert_eq!(a.node_text(), "nsu=urn:plant;s=Pump|1");

        let a = OpcuaAddress::parse("ns=2;s=Flow|sampling=250ms;deadband=1.5%;queue=4;mode=poll")
            .expect("options");
        assert_eq!(
            a.options,
            ItemOptions {
                sampling_ms: Some(250),
                deadband: Some(Deadband::Percent(1.5)),
                queue: Some(4),
                mode: Mode::Poll,
            }
        );
        assert_eq!(
            OpcuaAddress::parse("ns=2;s=Flow|deadband=0.2")
                .expect("abs")
                .options
                .deadband,
            Some(Deadband::Absolute(0.2))
        );
    }

    #[test]
    fn bad_addresses_say_why() {
        for (text, needle) in [
            ("Temp_0", "not a NodeId"),
            ("ns=x;s=a", "namespace index"),
            ("ns=2", "followed by"),
            ("nsu=;s=a", "empty namespace"),
            ("ns=2;i=abc", "not a NodeId"),
            ("ns=2;s=", "empty string"),
            ("ns=2;s=a|sampling=fast", "sampling"),
            ("ns=2;s=a|deadband=150%", "0-100"),
            ("ns=2;s=a|deadband=-1", "deadband"),
            ("ns=2;s=a|mode=push", "mode"),
            ("ns=2;s=a|queue=0", "queue"),
        ] {
            let e = OpcuaAddress::parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
