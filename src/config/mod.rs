//! Typed configuration: one TOML file (`thermacore.example.toml` documents every key),
//! environment overrides `THERMACORE_<SECTION>__<KEY>`, secrets only from the
//! environment, validated at start-up with errors naming the key and its position.

mod alarms;
pub mod draft;
mod json;
mod load;
mod model;
mod production;

pub use alarms::AlarmConfig;
pub use json::json_section;
pub use load::{ConfigError, load_file, parse_str};
pub use model::*;
pub use production::{production_problems, require_tls_without_settings};
