//! Writes of the Modbus driver: coils by FC5 (FC15), registers by FC6 or FC16, a bit of
//! a register by read-modify-write, and the optional read-back.

use super::super::address::Table;
use super::super::codec;
use super::super::pool::{Request, Response};
use super::{ModbusDriver, decode, read_request};
use crate::domain::{Tag, Value};
use crate::drivers::{Error, WriteReport};

fn as_bool(tag: &Tag, value: &Value) -> Result<bool, Error> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::I64(0) => Ok(false),
        Value::I64(1) => Ok(true),
        other => Err(Error::BadValue {
            tag: tag.spec.name.clone(),
            value: other.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

impl ModbusDriver {
    /// Writes one value: encoded per type and order, scaling undone, read back when the
    /// tag asks for confirmation.
    pub(super) async fn write_tag(
        &mut self,
        tag: &Tag,
        value: &Value,
    ) -> Result<WriteReport, Error> {
        if !tag.spec.writable {
            return Err(Error::NotWritable(tag.spec.name.clone()));
        }
        let Some(idx) = self.tags.iter().position(|t| t.id == tag.id) else {
            return Err(Error::Config(format!(
                "tag `{}` is not planned",
                tag.spec.name
            )));
        };
        let addr = self.tags[idx].addr;
        let ch = self.channel()?;
        ch.ready(self.config.timeout()).await?;
        let multiple = self.config.write_multiple;
        // What the table should hold afterwards, for the read-back.
        let (request, expect) = match (addr.table, addr.bit) {
            (Table::Coil, _) => {
                let on = as_bool(tag, value)?;
                let req = if multiple {
                    Request::WriteMultipleCoils(addr.start, vec![on])
                } else {
                    Request::WriteSingleCoil(addr.start, on)
                };
                (req, Response::Bits(vec![on]))
            }
            (Table::HoldingRegister, Some(bit)) => {
                // Read-modify-write of one bit (not atomic against the device's own logic).
                let on = as_bool(tag, value)?;
                let current = match self
                    .call(&ch, read_request(addr.table, addr.start, 1))
                    .await?
                {
                    Response::Registers(r) if r.len() == 1 => r[0],
                    _ => return Err(Error::Protocol("bad answer to the bit's read".into())),
                };
                let reg = codec::with_bit(current, bit, on);
                let req = if multiple {
                    Request::WriteMultipleRegisters(addr.start, vec![reg])
                } else {
                    Request::WriteSingleRegister(addr.start, reg)
                };
                (req, Response::Registers(vec![reg]))
            }
            (Table::HoldingRegister, None) => {
                let t = &self.tags[idx];
                let regs =
                    codec::encode_registers(&addr, value, t.scale, t.offset).map_err(|reason| {
                        Error::BadValue {
                            tag: tag.spec.name.clone(),
                            value: value.to_string(),
                            reason,
                        }
                    })?;
                let req = if regs.len() == 1 && !multiple {
                    Request::WriteSingleRegister(addr.start, regs[0])
                } else {
                    Request::WriteMultipleRegisters(addr.start, regs.clone())
                };
                (req, Response::Registers(regs))
            }
            _ => return Err(Error::NotWritable(tag.spec.name.clone())),
        };
        self.call(&ch, request).await?;
        if !self.tags[idx].confirm {
            return Ok(WriteReport { confirmed: None });
        }
        let back = self
            .call(&ch, read_request(addr.table, addr.start, addr.count))
            .await?;
        let t = &mut self.tags[idx];
        let read = decode(t, &back, 0).map_err(Error::Protocol)?;
        let same = match (&back, &expect, addr.bit) {
            (Response::Registers(got), Response::Registers(want), Some(bit)) => {
                got.first().map(|r| r >> bit & 1) == want.first().map(|r| r >> bit & 1)
            }
            (got, want, _) => got == want,
        };
        if !same {
            return Err(Error::NotConfirmed {
                tag: tag.spec.name.clone(),
                wrote: value.to_string(),
                read: read.to_string(),
            });
        }
        t.last = Some(read.clone());
        Ok(WriteReport {
            confirmed: Some(read),
        })
    }
}
