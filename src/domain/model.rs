//! The configured world: tenants, units, devices, tags and users.
//!
//! `*Spec` types are what a user declares (config file, later the API); the store
//! assigns ids and returns the full records.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use super::device_security::DeviceSecurity;
use super::ids::{DeviceId, TagId, TenantId, UnitId, UserId};
use crate::drivers::DriverConfig;

/// An isolated customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
}

/// A validated WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// Why a location was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LocationError {
    #[error("lat must be within -90..=90, got {0}")]
    Latitude(f64),
    #[error("lon must be within -180..=180, got {0}")]
    Longitude(f64),
}

impl Location {
    pub fn new(lat: f64, lon: f64) -> Result<Self, LocationError> {
        if !(-90.0..=90.0).contains(&lat) || lat.is_nan() {
            return Err(LocationError::Latitude(lat));
        }
        if !(-180.0..=180.0).contains(&lon) || lon.is_nan() {
            return Err(LocationError::Longitude(lon));
        }
        Ok(Location { lat, lon })
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            lat: f64,
            lon: f64,
        }
        let raw = Raw::deserialize(d)?;
        Location::new(raw.lat, raw.lon).map_err(serde::de::Error::custom)
    }
}

/// A physical asset with a name and a location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitSpec {
    pub name: String,
    pub location: Option<Location>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub id: UnitId,
    pub tenant: TenantId,
    pub spec: UnitSpec,
}

/// One protocol endpoint as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub name: String,
    pub unit: Option<UnitId>,
    pub enabled: bool,
    /// Poll period; 0 polls again as soon as a poll finishes (load tests).
    pub poll_ms: u64,
    pub driver: DriverConfig,
    /// TLS and credentials of the link, secrets sealed.
    #[serde(default)]
    pub security: DeviceSecurity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: DeviceId,
    pub tenant: TenantId,
    pub spec: DeviceSpec,
}

impl Device {
    pub fn protocol(&self) -> &'static str {
        self.spec.driver.protocol()
    }
}

/// The data type a tag's raw reading is decoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Bool,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
    String,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::I16 => "i16",
            DataType::U16 => "u16",
            DataType::I32 => "i32",
            DataType::U32 => "u32",
            DataType::I64 => "i64",
            DataType::U64 => "u64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown data type `{s}`"))
    }
}

/// One data point as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagSpec {
    pub name: String,
    pub unit: Option<UnitId>,
    /// Protocol-specific address, parsed by the device's driver.
    pub address: String,
    pub data_type: DataType,
    /// Engineering value = raw * scale + offset.
    pub scale: f64,
    pub offset: f64,
    pub eng_unit: Option<String>,
    /// A new reading within this distance of the last reported one is not reported.
    pub deadband: f64,
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub id: TagId,
    pub tenant: TenantId,
    pub device: DeviceId,
    pub spec: TagSpec,
}

/// What a user may do inside their tenant. Ordered: each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected admin, operator or viewer)"
            )),
        }
    }
}

/// A login inside one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub tenant: TenantId,
    pub username: String,
    /// argon2id PHC string; never leaves the server.
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    /// Tokens issued before this instant (ms since the epoch) no longer count.
    pub tokens_valid_after_ms: i64,
    /// Created by `thermacore demo`: refused in production mode.
    pub dev_credential: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_rejects_out_of_range() {
        assert!(Location::new(45.0, 7.0).is_ok());
        assert_eq!(Location::new(91.0, 0.0), Err(LocationError::Latitude(91.0)));
        assert_eq!(
            Location::new(0.0, -180.5),
            Err(LocationError::Longitude(-180.5))
        );
        assert!(Location::new(f64::NAN, 0.0).is_err());
    }

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}
