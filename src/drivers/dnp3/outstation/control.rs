//! The outstation's application and its control handler: outputs follow the commands
//! they get, unless told to refuse them.

use std::sync::{Arc, Mutex};

use dnp3::app::control::{
    CommandStatus, Group12Var1, Group41Var1, Group41Var2, Group41Var3, Group41Var4, OpType,
    TripCloseCode,
};
use dnp3::app::measurement::{AnalogOutputStatus, BinaryOutputStatus, Flags};
use dnp3::outstation::database::{DatabaseHandle, Get, Update, UpdateOptions};
use dnp3::outstation::{
    ApplicationIin, ControlHandler, ControlSupport, OperateType, OutstationApplication,
    OutstationInformation, RequestError,
};

use super::{Controls, ReceivedCommand, TimeWrite, lock, now};
use crate::drivers::dnp3::PointKind;

/// The outstation's clock is the system clock: a time write is accepted and recorded
/// (the times it stamps stay the system's), and clears NEED_TIME if it was asked for.
pub(super) struct Application {
    pub(super) controls: Arc<Mutex<Controls>>,
}

impl OutstationApplication for Application {
    fn write_absolute_time(&mut self, time: dnp3::app::Timestamp) -> Result<(), RequestError> {
        let mut c = lock(&self.controls);
        c.need_time = false;
        c.time_writes.push(TimeWrite {
            written_ms: time.raw_value(),
            received_ms: now().timestamp().raw_value(),
        });
        Ok(())
    }

    fn get_application_iin(&self) -> ApplicationIin {
        ApplicationIin {
            need_time: lock(&self.controls).need_time,
            ..ApplicationIin::default()
        }
    }
}

pub(super) struct Information;
impl OutstationInformation for Information {}

/// Outputs follow their commands: a CROB sets the binary output status, an analog
/// output block the analog output status, each with an event.
pub(super) struct Handler {
    pub(super) controls: Arc<Mutex<Controls>>,
}

impl Handler {
    fn check(&self, kind: PointKind, index: u16, db: &mut DatabaseHandle) -> CommandStatus {
        if let Some(s) = lock(&self.controls).refuse.get(&(kind, index)) {
            return *s;
        }
        let exists = db.transaction(|db| match kind {
            PointKind::BinaryOutput => Get::<BinaryOutputStatus>::get(db, index).is_some(),
            _ => Get::<AnalogOutputStatus>::get(db, index).is_some(),
        });
        if exists {
            CommandStatus::Success
        } else {
            CommandStatus::NotSupported
        }
    }

    fn select(&self, kind: PointKind, index: u16, db: &mut DatabaseHandle) -> CommandStatus {
        let s = self.check(kind, index, db);
        if s == CommandStatus::Success {
            lock(&self.controls).selected.push((kind, index));
        }
        s
    }

    fn operate(
        &self,
        kind: PointKind,
        index: u16,
        value: f64,
        op: OperateType,
        db: &mut DatabaseHandle,
    ) -> CommandStatus {
        let s = self.check(kind, index, db);
        if s != CommandStatus::Success {
            return s;
        }
        let mut c = lock(&self.controls);
        let selected = match c.selected.iter().position(|p| *p == (kind, index)) {
            Some(at) => {
                c.selected.remove(at);
                true
            }
            None => false,
        };
        c.received.push(ReceivedCommand {
            kind,
            index,
            value,
            selected: selected && op == OperateType::SelectBeforeOperate,
            direct: op != OperateType::SelectBeforeOperate,
        });
        drop(c);
        let t = now();
        db.transaction(|db| {
            let o = UpdateOptions::detect_event();
            match kind {
                PointKind::BinaryOutput => db.update(
                    index,
                    &BinaryOutputStatus::new(value != 0.0, Flags::ONLINE, t),
                    o,
                ),
                _ => db.update(index, &AnalogOutputStatus::new(value, Flags::ONLINE, t), o),
            }
        });
        CommandStatus::Success
    }
}

fn crob_value(c: &Group12Var1) -> f64 {
    let on = match (c.code.tcc, c.code.op_type) {
        (TripCloseCode::Trip, _) => false,
        (TripCloseCode::Close, _) => true,
        (_, OpType::LatchOn | OpType::PulseOn) => true,
        _ => false,
    };
    if on { 1.0 } else { 0.0 }
}

impl ControlHandler for Handler {}

impl ControlSupport<Group12Var1> for Handler {
    fn select(&mut self, _c: Group12Var1, index: u16, db: &mut DatabaseHandle) -> CommandStatus {
        Handler::select(self, PointKind::BinaryOutput, index, db)
    }

    fn operate(
        &mut self,
        c: Group12Var1,
        index: u16,
        op: OperateType,
        db: &mut DatabaseHandle,
    ) -> CommandStatus {
        Handler::operate(self, PointKind::BinaryOutput, index, crob_value(&c), op, db)
    }
}

macro_rules! analog_control {
    ($($g:ty),*) => {$(
        impl ControlSupport<$g> for Handler {
            fn select(&mut self, _c: $g, index: u16, db: &mut DatabaseHandle) -> CommandStatus {
                Handler::select(self, PointKind::AnalogOutput, index, db)
            }

            fn operate(&mut self, c: $g, index: u16, op: OperateType, db: &mut DatabaseHandle) -> CommandStatus {
                Handler::operate(self, PointKind::AnalogOutput, index, f64::from(c.value), op, db)
            }
        }
    )*};
}

analog_control!(Group41Var1, Group41Var2, Group41Var3, Group41Var4);
