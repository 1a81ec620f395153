//! Configuration of a simulated device.

use serde::{Deserialize, Serialize};

use crate::domain::{DataType, TagSpec};

/// `protocol = "sim"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Fail the device actor on purpose (a panic) every N polls; 0 = never.
    pub panic_every_polls: u64,
    /// Lose the simulated link every N polls; 0 = never. Tags go Bad/CommLost,
    /// then recover when the link comes back.
    pub disconnect_every_polls: u64,
    /// How many polls the simulated link stays down each time.
    pub disconnect_for_polls: u64,
    /// Tags the device generates by itself (`gen-0000` …), cycling through the
    /// signal kinds; added to the declared tags.
    pub generated_tags: u32,
    /// Seed of the random-walk generators (deterministic per seed and tag).
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            panic_every_polls: 0,
            disconnect_every_polls: 0,
            disconnect_for_polls: 3,
            generated_tags: 0,
            seed: 1,
        }
    }
}

impl SimConfig {
    pub(crate) fn generated_tag_specs(&self) -> Vec<TagSpec> {
        const KINDS: [(&str, DataType); 5] = [
            ("sine:period=60,amplitude=10,offset=50", DataType::F64),
            ("ramp:period=120,min=0,max=100", DataType::F64),
            ("walk:step=0.5,min=0,max=100", DataType::F64),
            ("square:period=30", DataType::Bool),
            ("counter:step=1", DataType::I64),
        ];
        (0..self.generated_tags)
            .map(|i| {
                let (address, data_type) = KINDS[i as usize % KINDS.len()];
                TagSpec {
                    name: format!("gen-{i:04}"),
                    unit: None,
                    address: address.to_string(),
                    data_type,
                    scale: 1.0,
                    offset: 0.0,
                    eng_unit: None,
                    deadband: 0.0,
                    writable: false,
                }
            })
            .collect()
    }
}
