//! A configuration section given as JSON (an API input) read with serde, naming the
//! key at fault by its path (`port`, `poll_groups[0].period_ms`; empty for the section
//! as a whole).

/// `(path, message)` of what does not read.
pub fn json_section<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}
