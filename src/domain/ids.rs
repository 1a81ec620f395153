//! Identifiers of tenants, units, devices, tags and users.
//!
//! Ids are integers assigned by the store. They travel through GraphQL as decimal
//! strings (`ID`), and an id alone never grants access: every lookup is scoped by the
//! tenant taken from the caller's token.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map($name)
            }
        }
    };
}

id_type!(
    /// An isolated customer.
    TenantId
);
id_type!(
    /// A physical asset (heat unit, pump station …).
    UnitId
);
id_type!(
    /// One protocol endpoint.
    DeviceId
);
id_type!(
    /// One data point on a device.
    TagId
);
id_type!(
    /// An alarm rule, and the one alarm instance it owns.
    RuleId
);
id_type!(
    /// A login inside one tenant.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print_as_decimal() {
        let id: TagId = " 42".parse().expect("parses");
        assert_eq!(id, TagId(42));
        assert_eq!(id.to_string(), "42");
        assert!("4x".parse::<TagId>().is_err());
    }
}
