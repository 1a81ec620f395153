//! An outstation built on the `dnp3` crate's own outstation, for the demo (a
//! substation feeder) and the tests: points of every type with event classes and
//! deadbands, updated from outside, and outputs that follow the commands they get.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use dnp3::app::NullListener;
use dnp3::app::control::CommandStatus;
use dnp3::app::measurement::{
    AnalogInput, AnalogOutputStatus, BinaryInput, BinaryOutputStatus, Counter, DoubleBit,
    DoubleBitBinaryInput, Flags, FrozenCounter, Time,
};
use dnp3::link::{EndpointAddress, LinkErrorMode};
use dnp3::outstation::database::*;
use dnp3::outstation::{OutstationConfig, OutstationHandle};
use dnp3::tcp::{AddressFilter, Server, ServerHandle};

use super::address::PointKind;

mod control;

use control::{Application, Handler, Information};

/// How a point's values are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Floats for analogs (groups 30 var 5, 32 var 7, 40 var 3, 42 var 7).
    #[default]
    Float,
    /// 32-bit integers for analogs (groups 30 var 1, 32 var 3, 40 var 1, 42 var 3).
    I32,
}

/// One point of the outstation's database.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSpec {
    pub kind: PointKind,
    pub index: u16,
    /// Event class 1, 2 or 3 (0: no events, static only).
    pub class: u8,
    /// Analogs and counters: changes within this much make no event.
    pub deadband: f64,
    pub initial: f64,
    pub encoding: Encoding,
}

impl PointSpec {
    pub fn new(kind: PointKind, index: u16, class: u8, initial: f64) -> Self {
        PointSpec {
            kind,
            index,
            class,
            deadband: 0.0,
            initial,
            encoding: Encoding::Float,
        }
    }

    pub fn deadband(mut self, d: f64) -> Self {
        self.deadband = d;
        self
    }

    pub fn encoding(mut self, e: Encoding) -> Self {
        self.encoding = e;
        self
    }
}

/// An outstation to run.
#[derive(Debug, Clone)]
pub struct OutstationSpec {
    /// Where to listen (port 0: a free one).
    pub listen: SocketAddr,
    pub outstation_address: u16,
    pub master_address: u16,
    pub points: Vec<PointSpec>,
    /// Events buffered per point type before the buffer overflows.
    pub event_buffer: u16,
    /// Report events unsolicited when the master enables it.
    pub unsolicited: bool,
    /// TLS (1.2+) with a full PKI: masters must present a certificate that `ca`
    /// signed.
    pub tls: Option<OutstationTls>,
    /// Ask masters for the time (IIN1.4 NEED_TIME) until one writes it.
    pub need_time: bool,
}

/// The outstation's TLS files (PEM paths).
#[derive(Debug, Clone)]
pub struct OutstationTls {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl OutstationSpec {
    pub fn new(points: Vec<PointSpec>) -> Self {
        OutstationSpec {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            outstation_address: 1024,
            master_address: 1,
            points,
            event_buffer: 100,
            unsolicited: true,
            tls: None,
            need_time: false,
        }
    }
}

/// A command the outstation received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedCommand {
    pub kind: PointKind,
    pub index: u16,
    /// The value commanded (1/0 for binary outputs).
    pub value: f64,
    /// The request had a SELECT before its OPERATE.
    pub selected: bool,
    pub direct: bool,
}

#[derive(Default)]
struct Controls {
    /// Outputs answering with a fixed status instead of operating.
    refuse: HashMap<(PointKind, u16), CommandStatus>,
    received: Vec<ReceivedCommand>,
    /// NEED_TIME is set (until a master writes the time).
    need_time: bool,
    time_writes: Vec<TimeWrite>,
    /// Outputs selected and not yet operated.
    selected: Vec<(PointKind, u16)>,
}

/// A time a master wrote (time synchronisation), in ms since the epoch: the time
/// written and when the outstation got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWrite {
    pub written_ms: u64,
    pub received_ms: u64,
}

/// Errors starting an outstation.
#[derive(Debug, thiserror::Error)]
pub enum OutstationError {
    #[error("outstation config: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running outstation; dropping it (or [`RunningOutstation::stop`]) closes its port.
/// Its points are reached through [`Points`] (also by deref).
pub struct RunningOutstation {
    points: Points,
    server: Option<ServerHandle>,
    addr: SocketAddr,
}

/// The points of a running outstation: updated, read and commanded from outside (a
/// clone can go to a task).
#[derive(Clone)]
pub struct Points {
    handle: OutstationHandle,
    controls: Arc<Mutex<Controls>>,
}

impl std::ops::Deref for RunningOutstation {
    type Target = Points;

    fn deref(&self) -> &Points {
        &self.points
    }
}

fn class(c: u8) -> Option<EventClass> {
    match c {
        1 => Some(EventClass::Class1),
        2 => Some(EventClass::Class2),
        3 => Some(EventClass::Class3),
        _ => None,
    }
}

fn now() -> Time {
    let ms = chrono::Utc::now().timestamp_millis();
    Time::synchronized(u64::try_from(ms).unwrap_or(0))
}

impl RunningOutstation {
    pub async fn start(spec: OutstationSpec) -> Result<Self, OutstationError> {
        let addr = |a: u16, what: &str| {
            EndpointAddress::try_new(a)
                .map_err(|e| OutstationError::Config(format!("{what} {a}: {e}")))
        };
        let mut config = OutstationConfig::new(
            addr(spec.outstation_address, "outstation_address")?,
            addr(spec.master_address, "master_address")?,
            EventBufferConfig::all_types(spec.event_buffer),
        );
        config.features.unsolicited = if spec.unsolicited {
            dnp3::outstation::Feature::Enabled
        } else {
            dnp3::outstation::Feature::Disabled
        };
        let controls = Arc::new(Mutex::new(Controls {
            need_time: spec.need_time,
            ..Controls::default()
        }));
        let mut server = match &spec.tls {
            None => Server::new_tcp_server(LinkErrorMode::Close, spec.listen),
            Some(t) => {
                let tls = dnp3::tcp::tls::TlsServerConfig::full_pki(
                    None,
                    &t.ca,
                    &t.cert,
                    &t.key,
                    None,
                    dnp3::tcp::tls::MinTlsVersion::V12,
                )
                .map_err(|e| OutstationError::Config(format!("TLS files: {e}")))?;
                Server::new_tls_server(LinkErrorMode::Close, spec.listen, tls)
            }
        };
        let handle = server
            .add_outstation(
                config,
                Box::new(Application {
                    controls: controls.clone(),
                }),
                Box::new(Information),
                Box::new(Handler {
                    controls: controls.clone(),
                }),
                NullListener::create(),
                AddressFilter::Any,
            )
            .map_err(|e| OutstationError::Config(format!("{e:?}")))?;
        handle.transaction(|db| {
            for p in &spec.points {
                add(db, p);
            }
        });
        let server = server
            .bind()
            .await
            .map_err(|source| OutstationError::Listen {
                addr: spec.listen,
                source,
            })?;
        // Bound to port 0, the server reports the port it got.
        let addr = server.local_addr().unwrap_or(spec.listen);
        Ok(RunningOutstation {
            points: Points { handle, controls },
            server: Some(server),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` for a device's `endpoint`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// The points, for a task that updates them.
    pub fn handle(&self) -> Points {
        self.points.clone()
    }

    /// Closes the port and every connection.
    pub fn stop(&mut self) {
        self.server.take();
    }
}

impl Points {
    /// Sets a point's value (1/0 for binaries, the state code 0-3 for double-bits)
    /// with `flags`, stamped now; an event if it changed beyond the deadband.
    pub fn update(&self, kind: PointKind, index: u16, value: f64, flags: u8) {
        self.update_many(&[(kind, index, value)], flags);
    }

    /// Sets several points' values in one transaction of the database (one stamp,
    /// `flags` on all), as [`Points::update`] does for one.
    pub fn update_many(&self, points: &[(PointKind, u16, f64)], flags: u8) {
        let flags = Flags::new(flags);
        let time = now();
        self.handle.transaction(|db| {
            for &(kind, index, value) in points {
                set(db, kind, index, value, flags, time);
            }
        });
    }

    /// A point's current value (1/0 for binaries, the state code for double-bits).
    pub fn value(&self, kind: PointKind, index: u16) -> Option<f64> {
        self.handle.transaction(|db| match kind {
            PointKind::BinaryInput => {
                Get::<BinaryInput>::get(db, index).map(|m| f64::from(u8::from(m.value)))
            }
            PointKind::DoubleBit => {
                Get::<DoubleBitBinaryInput>::get(db, index).map(|m| match m.value {
                    DoubleBit::Intermediate => 0.0,
                    DoubleBit::DeterminedOff => 1.0,
                    DoubleBit::DeterminedOn => 2.0,
                    DoubleBit::Indeterminate => 3.0,
                })
            }
            PointKind::BinaryOutput => {
                Get::<BinaryOutputStatus>::get(db, index).map(|m| f64::from(u8::from(m.value)))
            }
            PointKind::Counter => Get::<Counter>::get(db, index).map(|m| f64::from(m.value)),
            PointKind::FrozenCounter => {
                Get::<FrozenCounter>::get(db, index).map(|m| f64::from(m.value))
            }
            PointKind::AnalogInput => Get::<AnalogInput>::get(db, index).map(|m| m.value),
            PointKind::AnalogOutput => Get::<AnalogOutputStatus>::get(db, index).map(|m| m.value),
        })
    }

    /// Makes the output answer every command with `status` (None: operate again).
    pub fn refuse(&self, kind: PointKind, index: u16, status: Option<CommandStatus>) {
        let mut c = lock(&self.controls);
        match status {
            Some(s) => c.refuse.insert((kind, index), s),
            None => c.refuse.remove(&(kind, index)),
        };
    }

    /// The times masters wrote so far, oldest first.
    pub fn time_writes(&self) -> Vec<TimeWrite> {
        lock(&self.controls).time_writes.clone()
    }

    /// The commands operated so far, oldest first.
    pub fn commands(&self) -> Vec<ReceivedCommand> {
        lock(&self.controls).received.clone()
    }
}

fn lock(c: &Mutex<Controls>) -> std::sync::MutexGuard<'_, Controls> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Updates one point, detecting an event.
fn set(db: &mut Database, kind: PointKind, index: u16, value: f64, flags: Flags, time: Time) {
    let o = UpdateOptions::detect_event();
    let _ = match kind {
        PointKind::BinaryInput => db.update(index, &BinaryInput::new(value != 0.0, flags, time), o),
        PointKind::DoubleBit => db.update(
            index,
            &DoubleBitBinaryInput::new(double_bit(value), flags, time),
            o,
        ),
        PointKind::BinaryOutput => db.update(
            index,
            &BinaryOutputStatus::new(value != 0.0, flags, time),
            o,
        ),
        PointKind::Counter => db.update(index, &Counter::new(value as u32, flags, time), o),
        PointKind::FrozenCounter => {
            db.update(index, &FrozenCounter::new(value as u32, flags, time), o)
        }
        PointKind::AnalogInput => db.update(index, &AnalogInput::new(value, flags, time), o),
        PointKind::AnalogOutput => {
            db.update(index, &AnalogOutputStatus::new(value, flags, time), o)
        }
    };
}

fn double_bit(v: f64) -> DoubleBit {
    match v as u8 {
        0 => DoubleBit::Intermediate,
        1 => DoubleBit::DeterminedOff,
        2 => DoubleBit::DeterminedOn,
        _ => DoubleBit::Indeterminate,
    }
}

fn add(db: &mut Database, p: &PointSpec) {
    let (c, i, t) = (class(p.class), p.index, now());
    let online = Flags::ONLINE;
    let init = UpdateOptions::no_event();
    let float = p.encoding == Encoding::Float;
    match p.kind {
        PointKind::BinaryInput => {
            let cfg = BinaryInputConfig {
                s_var: StaticBinaryInputVariation::Group1Var2,
                e_var: EventBinaryInputVariation::Group2Var2,
            };
            db.add(i, c, cfg);
            db.update(i, &BinaryInput::new(p.initial != 0.0, online, t), init);
        }
        PointKind::DoubleBit => {
            let cfg = DoubleBitBinaryInputConfig {
                s_var: StaticDoubleBitBinaryInputVariation::Group3Var2,
                e_var: EventDoubleBitBinaryInputVariation::Group4Var2,
            };
            db.add(i, c, cfg);
            db.update(
                i,
                &DoubleBitBinaryInput::new(double_bit(p.initial), online, t),
                init,
            );
        }
        PointKind::BinaryOutput => {
            let cfg = BinaryOutputStatusConfig {
                s_var: StaticBinaryOutputStatusVariation::Group10Var2,
                e_var: EventBinaryOutputStatusVariation::Group11Var2,
            };
            db.add(i, c, cfg);
            db.update(
                i,
                &BinaryOutputStatus::new(p.initial != 0.0, online, t),
                init,
            );
        }
        PointKind::Counter => {
            let cfg = CounterConfig {
                s_var: StaticCounterVariation::Group20Var1,
                e_var: EventCounterVariation::Group22Var5,
                deadband: p.deadband as u32,
            };
            db.add(i, c, cfg);
            db.update(i, &Counter::new(p.initial as u32, online, t), init);
        }
        PointKind::FrozenCounter => {
            let cfg = FrozenCounterConfig {
                s_var: StaticFrozenCounterVariation::Group21Var1,
                e_var: EventFrozenCounterVariation::Group23Var5,
                deadband: p.deadband as u32,
            };
            db.add(i, c, cfg);
            db.update(i, &FrozenCounter::new(p.initial as u32, online, t), init);
        }
        PointKind::AnalogInput => {
            let cfg = AnalogInputConfig {
                s_var: if float {
                    StaticAnalogInputVariation::Group30Var5
                } else {
                    StaticAnalogInputVariation::Group30Var1
                },
                e_var: if float {
                    EventAnalogInputVariation::Group32Var7
                } else {
                    EventAnalogInputVariation::Group32Var3
                },
                deadband: p.deadband,
            };
            db.add(i, c, cfg);
            db.update(i, &AnalogInput::new(p.initial, online, t), init);
        }
        PointKind::AnalogOutput => {
            let cfg = AnalogOutputStatusConfig {
                s_var: if float {
                    StaticAnalogOutputStatusVariation::Group40Var3
                } else {
                    StaticAnalogOutputStatusVariation::Group40Var1
                },
                e_var: if float {
                    EventAnalogOutputStatusVariation::Group42Var7
                } else {
                    EventAnalogOutputStatusVariation::Group42Var3
                },
                deadband: p.deadband,
            };
            db.add(i, c, cfg);
            db.update(i, &AnalogOutputStatus::new(p.initial, online, t), init);
        }
    }
}
