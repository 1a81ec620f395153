//! What the master hands us: measurements of every point type (from polls and
//! unsolicited responses, in the order they arrive), the IIN bits of each response,
//! and the link's state. Measurements become samples pushed to the device actor, one
//! batch per response fragment.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use dnp3::app::measurement::{
    AnalogInput, AnalogOutputStatus, BinaryInput, BinaryOutputStatus, Counter,
    DoubleBitBinaryInput, Flags, FrozenCounter, Time,
};
use dnp3::app::{Iin, Listener, MaybeAsync, ResponseHeader, Variation};
use dnp3::master::{HeaderInfo, ReadHandler, ReadType};
use dnp3::tcp::ClientState;
use tokio::sync::mpsc;

use super::address::{PointAddress, PointKind};
use super::measure::{self, Raw};
use crate::domain::{Quality, QualityReason, Sample, Tag, TagId, Timestamp, Value};
use crate::drivers::{DriverSink, LinkEvent};
use crate::telemetry::names;

/// A tag reading one point.
#[derive(Debug, Clone)]
pub struct MappedTag {
    pub tag: TagId,
    pub name: String,
    pub data_type: crate::domain::DataType,
    pub scale: f64,
    pub offset: f64,
}

/// Every tag of the device by the point it reads (several tags may read one point).
#[derive(Debug, Default)]
pub struct Points {
    by_point: HashMap<(PointKind, u16), Vec<MappedTag>>,
}

impl Points {
    pub fn new(tags: &[(Tag, PointAddress)]) -> Self {
        let mut by_point: HashMap<_, Vec<MappedTag>> = HashMap::new();
        for (t, a) in tags {
            by_point
                .entry((a.kind, a.index))
                .or_default()
                .push(MappedTag {
                    tag: t.id,
                    name: t.spec.name.clone(),
                    data_type: t.spec.data_type,
                    scale: t.spec.scale,
                    offset: t.spec.offset,
                });
        }
        Points { by_point }
    }
}

const UNKNOWN: u8 = 0;
const ANSWERING: u8 = 1;
const SILENT: u8 = 2;
const TROUBLE: u8 = 3;

/// Whether the outstation answers, told to the device actor on every change, and the
/// integrity polls that a reconnect, a restart or a silence that ends calls for.
pub struct Health {
    sink: DriverSink,
    state: AtomicU8,
    overflow: AtomicBool,
    restart: AtomicBool,
    /// An integrity poll is in flight: a restart it reveals needs no second one.
    integrity_running: AtomicBool,
    integrity: mpsc::UnboundedSender<()>,
}

impl Health {
    pub fn new(sink: DriverSink, integrity: mpsc::UnboundedSender<()>) -> Arc<Self> {
        Arc::new(Health {
            sink,
            state: AtomicU8::new(UNKNOWN),
            overflow: AtomicBool::new(false),
            restart: AtomicBool::new(false),
            integrity_running: AtomicBool::new(false),
            integrity,
        })
    }

    pub fn sink(&self) -> &DriverSink {
        &self.sink
    }

    pub fn integrity_running(&self, running: bool) {
        self.integrity_running.store(running, Ordering::Release);
    }

    /// Asks the integrity poll task for a poll now.
    pub fn demand_integrity(&self) {
        let _ = self.integrity.send(());
    }

    /// A request was answered (or an unsolicited response came).
    pub fn answered(&self) {
        if self.overflow.load(Ordering::Relaxed) {
            self.set(
                TROUBLE,
                "the outstation's event buffer overflowed: events were lost (an integrity poll reads the current values)",
            );
            return;
        }
        let before = self.state.swap(ANSWERING, Ordering::AcqRel);
        if before != ANSWERING {
            if before == SILENT {
                // Values were lost while it was silent: read them all again.
                self.demand_integrity();
            }
            (self.sink.link)(LinkEvent::Answered);
        }
    }

    /// A request went unanswered although the link is up.
    pub fn silent(&self, why: String) {
        if self.state.swap(SILENT, Ordering::AcqRel) != SILENT {
            (self.sink.link)(LinkEvent::Silent { error: why });
        }
    }

    fn set(&self, state: u8, why: &str) {
        if self.state.swap(state, Ordering::AcqRel) != state {
            (self.sink.link)(LinkEvent::Trouble { error: why.into() });
        }
    }

    /// The IIN bits of one response: counted, and acted on (a restart reads everything
    /// again, an overflow is reported).
    fn iin(&self, iin: Iin) {
        let bits = [
            ("device_restart", iin.iin1.get_device_restart()),
            ("need_time", iin.iin1.get_need_time()),
            ("local_control", iin.iin1.get_local_control()),
            ("device_trouble", iin.iin1.get_device_trouble()),
            (
                "event_buffer_overflow",
                iin.iin2.get_event_buffer_overflow(),
            ),
            ("config_corrupt", iin.iin2.get_config_corrupt()),
            ("no_func_code_support", iin.iin2.get_no_func_code_support()),
            ("object_unknown", iin.iin2.get_object_unknown()),
            ("parameter_error", iin.iin2.get_parameter_error()),
            ("already_executing", iin.iin2.get_already_executing()),
        ];
        for (bit, set) in bits {
            if set {
                metrics::counter!(names::DNP3_IIN, "bit" => bit).increment(1);
            }
        }
        let restart = iin.iin1.get_device_restart();
        if restart && !self.restart.swap(true, Ordering::AcqRel) {
            tracing::info!(device = %self.sink.device, "the DNP3 outstation restarted: integrity poll");
            if !self.integrity_running.load(Ordering::Acquire) {
                self.demand_integrity();
            }
        } else if !restart {
            self.restart.store(false, Ordering::Release);
        }
        let overflow = iin.iin2.get_event_buffer_overflow();
        let was = self.overflow.swap(overflow, Ordering::AcqRel);
        if overflow && !was {
            tracing::warn!(device = %self.sink.device, "the DNP3 outstation's event buffer overflowed: events were lost");
        }
    }

    /// The link went down or came up: the next answer is news again.
    fn reset(&self) {
        self.state.store(UNKNOWN, Ordering::Release);
    }
}

/// The master's read handler: one batch of samples per response fragment.
pub struct Handler {
    points: Arc<Points>,
    health: Arc<Health>,
    batch: Vec<Sample>,
    received: Timestamp,
    /// Object kinds already warned about (each is logged once per connection).
    warned: Vec<&'static str>,
}

impl Handler {
    pub fn new(points: Arc<Points>, health: Arc<Health>) -> Self {
        Handler {
            points,
            health,
            batch: Vec::new(),
            received: Timestamp::now(),
            warned: Vec::new(),
        }
    }

    fn push(
        &mut self,
        kind: PointKind,
        info: &HeaderInfo,
        items: impl Iterator<Item = (u16, Raw, Flags, Option<Time>)>,
    ) {
        let mut events = 0u64;
        for (index, raw, flags, time) in items {
            events += u64::from(info.is_event);
            let Some(tags) = self.points.by_point.get(&(kind, index)) else {
                continue;
            };
            let flag_quality = measure::quality(kind, flags);
            let (source_time, flag_quality) = measure::time(time, self.received, flag_quality);
            for t in tags {
                let (value, quality) = match measure::value(raw, t.data_type, t.scale, t.offset) {
                    Ok(v) => (v, flag_quality),
                    Err(e) => {
                        tracing::debug!(tag = %t.name, error = %e, "DNP3 value does not fit the tag");
                        (
                            placeholder(t.data_type),
                            Quality::Bad(QualityReason::TypeMismatch),
                        )
                    }
                };
                self.batch.push(Sample {
                    tag: t.tag,
                    value,
                    quality,
                    source_time,
                    server_time: self.received,
                });
            }
        }
        if events > 0 {
            metrics::counter!(names::DNP3_EVENTS, "point" => kind.as_str()).increment(events);
        }
    }

    fn skipped(&mut self, object: &'static str, count: u64) {
        metrics::counter!(names::DNP3_SKIPPED_OBJECTS, "object" => object).increment(count);
        if !self.warned.contains(&object) {
            self.warned.push(object);
            tracing::warn!(
                device = %self.health.sink.device,
                object,
                "the DNP3 outstation sent objects no tag maps: skipped (counted in {})",
                names::DNP3_SKIPPED_OBJECTS
            );
        }
    }
}

/// Single-precision float variations: their values read as the decimal sent.
fn single_float(v: Variation) -> bool {
    matches!(
        v,
        Variation::Group30Var5
            | Variation::Group32Var5
            | Variation::Group32Var7
            | Variation::Group40Var3
            | Variation::Group42Var5
            | Variation::Group42Var7
    )
}

fn analog(v: f64, single: bool) -> Raw {
    Raw::Analog(if single {
        crate::drivers::scaling::widen_f32(v as f32)
    } else {
        v
    })
}

/// The value a Bad sample carries when the device's value does not fit the tag.
fn placeholder(t: crate::domain::DataType) -> Value {
    match t {
        crate::domain::DataType::Bool => Value::Bool(false),
        crate::domain::DataType::String => Value::Str("".into()),
        crate::domain::DataType::F32 | crate::domain::DataType::F64 => Value::F64(0.0),
        _ => Value::I64(0),
    }
}

impl ReadHandler for Handler {
    fn begin_fragment(&mut self, read_type: ReadType, header: ResponseHeader) -> MaybeAsync<()> {
        self.received = Timestamp::now();
        if read_type == ReadType::Unsolicited {
            metrics::counter!(names::DNP3_UNSOLICITED).increment(1);
        }
        self.health.iin(header.iin);
        MaybeAsync::ready(())
    }

    fn end_fragment(&mut self, read_type: ReadType, _header: ResponseHeader) -> MaybeAsync<()> {
        if !self.batch.is_empty() {
            let batch = std::mem::take(&mut self.batch);
            (self.health.sink.samples)(batch);
        }
        if read_type == ReadType::Unsolicited {
            self.health.answered();
        }
        MaybeAsync::ready(())
    }

    fn handle_binary_input(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (BinaryInput, u16)>,
    ) {
        let items = iter.map(|(m, i)| (i, Raw::Bool(m.value), m.flags, m.time));
        self.push(PointKind::BinaryInput, &info, items);
    }

    fn handle_double_bit_binary_input(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (DoubleBitBinaryInput, u16)>,
    ) {
        let items = iter.map(|(m, i)| (i, Raw::DoubleBit(m.value), m.flags, m.time));
        self.push(PointKind::DoubleBit, &info, items);
    }

    fn handle_binary_output_status(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (BinaryOutputStatus, u16)>,
    ) {
        let items = iter.map(|(m, i)| (i, Raw::Bool(m.value), m.flags, m.time));
        self.push(PointKind::BinaryOutput, &info, items);
    }

    fn handle_counter(&mut self, info: HeaderInfo, iter: &mut dyn Iterator<Item = (Counter, u16)>) {
        let items = iter.map(|(m, i)| (i, Raw::Counter(m.value), m.flags, m.time));
        self.push(PointKind::Counter, &info, items);
    }

    fn handle_frozen_counter(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (FrozenCounter, u16)>,
    ) {
        let items = iter.map(|(m, i)| (i, Raw::Counter(m.value), m.flags, m.time));
        self.push(PointKind::FrozenCounter, &info, items);
    }

    fn handle_analog_input(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (AnalogInput, u16)>,
    ) {
        let single = single_float(info.variation);
        let items = iter.map(|(m, i)| (i, analog(m.value, single), m.flags, m.time));
        self.push(PointKind::AnalogInput, &info, items);
    }

    fn handle_analog_output_status(
        &mut self,
        info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (AnalogOutputStatus, u16)>,
    ) {
        let single = single_float(info.variation);
        let items = iter.map(|(m, i)| (i, analog(m.value, single), m.flags, m.time));
        self.push(PointKind::AnalogOutput, &info, items);
    }

    fn handle_frozen_analog_input(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (dnp3::app::measurement::FrozenAnalogInput, u16)>,
    ) {
        self.skipped("frozen_analog_input", iter.count() as u64);
    }

    fn handle_analog_input_dead_band(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (dnp3::app::measurement::AnalogInputDeadBand, u16)>,
    ) {
        self.skipped("analog_input_dead_band", iter.count() as u64);
    }

    fn handle_binary_output_command_event(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (dnp3::app::measurement::BinaryOutputCommandEvent, u16)>,
    ) {
        self.skipped("binary_output_command_event", iter.count() as u64);
    }

    fn handle_analog_output_command_event(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (dnp3::app::measurement::AnalogOutputCommandEvent, u16)>,
    ) {
        self.skipped("analog_output_command_event", iter.count() as u64);
    }

    fn handle_unsigned_integer(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (dnp3::app::measurement::UnsignedInteger, u16)>,
    ) {
        self.skipped("unsigned_integer", iter.count() as u64);
    }

    fn handle_octet_string(
        &mut self,
        _info: HeaderInfo,
        iter: &mut dyn Iterator<Item = (&[u8], u16)>,
    ) {
        self.skipped("octet_string", iter.count() as u64);
    }

    fn handle_device_attribute(&mut self, _info: HeaderInfo, _attr: dnp3::app::attr::AnyAttribute) {
        self.skipped("device_attribute", 1);
    }
}

/// The master channel's link state, as link events.
pub struct LinkListener {
    pub health: Arc<Health>,
}

impl Listener<ClientState> for LinkListener {
    fn update(&mut self, state: ClientState) -> MaybeAsync<()> {
        let sink = &self.health.sink;
        let event = match state {
            ClientState::Connecting => Some(LinkEvent::Connecting),
            ClientState::Connected => {
                metrics::counter!(names::DNP3_LINKS, "state" => "connected").increment(1);
                self.health.reset();
                // Every connect reads everything (and after it, events flow). A link
                // is no answer yet: the device is ONLINE once the outstation answers.
                self.health.demand_integrity();
                None
            }
            ClientState::WaitAfterFailedConnect(d) => {
                metrics::counter!(names::DNP3_LINKS, "state" => "connect_failed").increment(1);
                self.health.reset();
                Some(LinkEvent::ConnectFailed {
                    retry_in_ms: d.as_millis() as u64,
                })
            }
            ClientState::WaitAfterDisconnect(d) => {
                metrics::counter!(names::DNP3_LINKS, "state" => "disconnected").increment(1);
                self.health.reset();
                Some(LinkEvent::Disconnected {
                    retry_in_ms: d.as_millis() as u64,
                })
            }
            ClientState::Disabled | ClientState::Shutdown => None,
        };
        if let Some(e) = event {
            (sink.link)(e);
        }
        MaybeAsync::ready(())
    }
}
