//! A simulated Modbus device on rodbus's server side: a register bank per unit id,
//! served on a TCP listener. Addresses not in the bank answer the illegal-address
//! exception, as a real device with gaps in its map does. The demo's PLC, the tests
//! and the load test use it as the device on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rodbus::server::{
    AddressFilter, RequestHandler, ServerHandle, ServerHandlerMap, WriteCoils, WriteRegisters,
};
use rodbus::{DecodeLevel, ExceptionCode, Indexed, UnitId};
use tokio::net::TcpListener;

/// The four tables of one unit. Only the addresses present exist.
#[derive(Debug, Default, Clone)]
pub struct Bank {
    pub coils: HashMap<u16, bool>,
    pub discrete_inputs: HashMap<u16, bool>,
    pub input_registers: HashMap<u16, u16>,
    pub holding_registers: HashMap<u16, u16>,
    /// Holding registers that refuse writes (illegal data value), like read-only
    /// parameters of a real device.
    pub read_only: std::collections::HashSet<u16>,
    /// Writes accepted, for tests.
    pub writes: u64,
}

impl Bank {
    /// A bank with holding and input registers `0..n` (value = address) and coils
    /// and discrete inputs `0..n` (false).
    pub fn filled(n: u16) -> Self {
        let mut b = Bank::default();
        for a in 0..n {
            b.holding_registers.insert(a, a);
            b.input_registers.insert(a, a);
            b.coils.insert(a, false);
            b.discrete_inputs.insert(a, false);
        }
        b
    }

    /// Sets consecutive holding registers from `start`.
    pub fn set_holding(&mut self, start: u16, regs: &[u16]) {
        for (i, r) in regs.iter().enumerate() {
            self.holding_registers.insert(start + i as u16, *r);
        }
    }

    /// Sets consecutive input registers from `start`.
    pub fn set_input(&mut self, start: u16, regs: &[u16]) {
        for (i, r) in regs.iter().enumerate() {
            self.input_registers.insert(start + i as u16, *r);
        }
    }

    /// Consecutive holding registers from `start` (None where one is missing).
    pub fn holding(&self, start: u16, count: u16) -> Option<Vec<u16>> {
        (0..count)
            .map(|i| self.holding_registers.get(&(start + i)).copied())
            .collect()
    }
}

fn found<T: Copy>(v: Option<&T>) -> Result<T, ExceptionCode> {
    v.copied().ok_or(ExceptionCode::IllegalDataAddress)
}

impl RequestHandler for Bank {
    fn read_coil(&self, address: u16) -> Result<bool, ExceptionCode> {
        found(self.coils.get(&address))
    }

    fn read_discrete_input(&self, address: u16) -> Result<bool, ExceptionCode> {
        found(self.discrete_inputs.get(&address))
    }

    fn read_holding_register(&self, address: u16) -> Result<u16, ExceptionCode> {
        found(self.holding_registers.get(&address))
    }

    fn read_input_register(&self, address: u16) -> Result<u16, ExceptionCode> {
        found(self.input_registers.get(&address))
    }

    fn write_single_coil(&mut self, value: Indexed<bool>) -> Result<(), ExceptionCode> {
        let c = self
            .coils
            .get_mut(&value.index)
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        *c = value.value;
        self.writes += 1;
        Ok(())
    }

    fn write_single_register(&mut self, value: Indexed<u16>) -> Result<(), ExceptionCode> {
        if self.read_only.contains(&value.index) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let r = self
            .holding_registers
            .get_mut(&value.index)
            .ok_or(ExceptionCode::IllegalDataAddress)?;
        *r = value.value;
        self.writes += 1;
        Ok(())
    }

    fn write_multiple_coils(&mut self, values: WriteCoils) -> Result<(), ExceptionCode> {
        let all: Vec<Indexed<bool>> = values.iterator.collect();
        if all.iter().any(|v| !self.coils.contains_key(&v.index)) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        for v in all {
            self.coils.insert(v.index, v.value);
        }
        self.writes += 1;
        Ok(())
    }

    fn write_multiple_registers(&mut self, values: WriteRegisters) -> Result<(), ExceptionCode> {
        let all: Vec<Indexed<u16>> = values.iterator.collect();
        if all
            .iter()
            .any(|v| !self.holding_registers.contains_key(&v.index))
        {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        if all.iter().any(|v| self.read_only.contains(&v.index)) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        for v in all {
            self.holding_registers.insert(v.index, v.value);
        }
        self.writes += 1;
        Ok(())
    }
}

/// A bank as the server holds it: the simulation locks it between requests.
#[derive(Clone)]
pub struct BankHandle(Arc<Mutex<Box<Bank>>>);

impl BankHandle {
    pub fn new(bank: Bank) -> Self {
        BankHandle(bank.wrap())
    }

    /// Locks the bank (briefly: the server waits for it).
    pub fn lock(&self) -> MutexGuard<'_, Box<Bank>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves `units` on `listener` until the returned handle is dropped.
pub fn serve(listener: TcpListener, units: &[(u8, BankHandle)]) -> ServerHandle {
    let mut map = ServerHandlerMap::new();
    for (id, bank) in units {
        map.add(UnitId::new(*id), bank.0.clone());
    }
    let (handle, task) = rodbus::server::create_tcp_server_task(
        64,
        listener,
        map,
        AddressFilter::Any,
        DecodeLevel::nothing(),
    );
    tokio::spawn(task.run());
    handle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_addresses_are_illegal_and_read_only_registers_refuse_writes() {
        let mut b = Bank::filled(4);
        b.read_only.insert(2);
        assert_eq!(b.read_holding_register(3), Ok(3));
        assert_eq!(
            b.read_holding_register(4),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            b.write_single_register(Indexed::new(2, 9)),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(b.write_single_register(Indexed::new(1, 9)), Ok(()));
        assert_eq!(b.holding(0, 2), Some(vec![0, 9]));
        assert_eq!(b.holding(3, 2), None);
    }
}
