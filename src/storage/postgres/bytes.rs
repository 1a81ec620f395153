//! Byte-level helpers of the packed history layouts ([`super::packed`],
//! [`super::packed_samples`]): LEB128 varints (zigzag for signed numbers), a reader
//! that answers `None` past the end instead of panicking, and keys as `UNNEST` columns.

/// LEB128: seven bits a byte, low first.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A signed number as a varint, small magnitudes short (zigzag).
pub(super) fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads what [`put_varint`] and [`put_signed`] wrote; `None` past the end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }
}

impl Reader<'_> {
    pub(super) fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&[u8]> {
        let b = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    pub(super) fn signed(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub(super) fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(super) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(super) fn count(&mut self) -> Option<i64> {
        i64::try_from(self.varint()?).ok()
    }
}

/// Keys as three columns, for `UNNEST`.
pub(super) fn columns(keys: &[(i64, i64, i64)]) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let mut cols = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for &(a, b, c) in keys {
        cols.0.push(a);
        cols.1.push(b);
        cols.2.push(c);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_stop_at_the_end() {
        let values = [0i64, 1, -1, 63, -64, 64, 1 << 40, i64::MAX, i64::MIN];
        let mut out = Vec::new();
        for v in values {
            put_signed(&mut out, v);
            put_varint(&mut out, v as u64);
        }
        let mut r = Reader::new(&out);
        for v in values {
            assert_eq!((r.signed(), r.varint()), (Some(v), Some(v as u64)));
        }
        assert!(r.done() && r.byte().is_none() && r.varint().is_none());
        // Eleven continuation bytes are no varint.
        assert_eq!(Reader::new(&[0x80; 11]).varint(), None);
        assert_eq!(Reader::new(&[1, 2]).take(3), None);
    }
}
