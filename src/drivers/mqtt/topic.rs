//! MQTT topic filters (`+`, `#`, `$share/GROUP/…`) and topic templates
//! (`site/{unit}/temperature`: one tag per value of the `{unit}` segment).

/// Checks a topic filter as a subscription would (MQTT 3.1.1 §4.7).
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("empty topic filter".into());
    }
    if filter.len() > 65_535 {
        return Err("topic filter longer than 65535 bytes".into());
    }
    if filter.contains('\0') {
        return Err("topic filter contains NUL".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        match *level {
            "#" if i + 1 != levels.len() => {
                return Err(format!("`{filter}`: `#` must be the last level"));
            }
            "#" | "+" => {}
            l if l.contains('#') || l.contains('+') => {
                return Err(format!(
                    "`{filter}`: `+` and `#` must take a whole level, found `{l}`"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a topic a message is published to: no wildcards.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty topic".into());
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!(
            "`{topic}`: a topic to publish to cannot hold `+`, `#` or NUL"
        ));
    }
    Ok(())
}

/// True if `topic` matches `filter`. `$`-topics (`$SYS/…`) match only filters that
/// name them, as brokers deliver them.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if a filter holds a wildcard (it cannot be looked up as one topic).
pub fn is_wildcard(filter: &str) -> bool {
    filter.split('/').any(|l| l == "+" || l == "#")
}

/// The filter a subscription sends: `$share/GROUP/FILTER` when the device shares
/// its subscriptions with other nodes.
pub fn subscription(filter: &str, share_group: Option<&str>) -> String {
    match share_group {
        Some(g) => format!("$share/{g}/{filter}"),
        None => filter.to_string(),
    }
}

/// A topic template: levels that are `{name}` capture that level of a matching topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    levels: Vec<Level>,
    /// The template as a subscription filter (`{x}` levels become `+`).
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Fixed(String),
    Capture(String),
    Any,
}

impl Template {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut levels = Vec::new();
        let mut names = Vec::new();
        for level in template.split('/') {
            if let Some(name) = level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "`{template}`: `{{{name}}}` must be a name of letters, digits or `_`"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("`{template}`: `{{{name}}}` appears twice"));
                }
                names.push(name);
                levels.push(Level::Capture(name.to_string()));
            } else if level.contains(['{', '}']) {
                return Err(format!(
                    "`{template}`: a `{{name}}` must take a whole level, found `{level}`"
                ));
            } else if level == "+" {
                levels.push(Level::Any);
            } else if level == "#" {
                return Err(format!("`{template}`: a template cannot hold `#`"));
            } else {
                levels.push(Level::Fixed(level.to_string()));
            }
        }
        if names.is_empty() {
            return Err(format!(
                "`{template}`: a template needs at least one `{{name}}` level"
            ));
        }
        let filter = levels
            .iter()
            .map(|l| match l {
                Level::Fixed(s) => s.as_str(),
                Level::Capture(_) | Level::Any => "+",
            })
            .collect::<Vec<_>>()
            .join("/");
        check_filter(&filter)?;
        Ok(Template { levels, filter })
    }

    /// The names the template captures.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Capture(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The captured levels of `topic`, or None when it does not match.
    pub fn capture<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let mut out = Vec::new();
        let mut t = topic.split('/');
        for level in &self.levels {
            let seg = t.next()?;
            match level {
                Level::Fixed(f) if f != seg => return None,
                Level::Capture(name) => {
                    if seg.is_empty() {
                        return None;
                    }
                    out.push((name.as_str(), seg));
                }
                _ => {}
            }
        }
        t.next().is_none().then_some(out)
    }
}

/// Replaces `{name}` in `text` by the captured values.
pub fn render(text: &str, captures: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (name, value) in captures {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_spec_says() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("+", ""));
        assert!(matches("a//b", "a//b"));
        assert!(matches("+/+", "/x"));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in ["", "a/#/b", "a/b#", "a+/b", "x\0"] {
            assert!(check_filter(bad).is_err(), "{bad:?}");
        }
        for good in ["#", "+", "a/+/#", "$SYS/#", "/"] {
            assert!(check_filter(good).is_ok(), "{good:?}");
        }
        assert!(check_topic("a/+").is_err());
        assert_eq!(subscription("a/#", Some("g")), "$share/g/a/#");
    }

    #[test]
    fn templates_capture_levels() {
        let t = Template::parse("site/{unit}/+/temperature").expect("template");
        assert_eq!(t.filter, "site/+/+/temperature");
        assert_eq!(
            t.capture("site/north/x/temperature"),
            Some(vec![("unit", "north")])
        );
        assert_eq!(t.capture("site/north/x/pressure"), None);
        assert_eq!(t.capture("site/north/x/temperature/extra"), None);
        assert_eq!(t.capture("site//x/temperature"), None);
        assert_eq!(
            render("{unit}.temperature", &[("unit", "north")]),
            "north.temperature"
        );
        for bad in [
            "site/x",
            "site/{u}/{u}",
            "site/a{u}/x",
            "site/{u}/#",
            "site/{}/x",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
