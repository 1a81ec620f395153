//! Read planning: the tags of one poll group are grouped, per unit and table, into the
//! fewest requests within the device's limits, bridging gaps of up to `max_gap`
//! unused coils or registers. Computed once per configuration, not per poll.

use super::address::{Address, Table};

/// Limits of one device (or of the gateway in front of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers in one read (Modbus allows 125).
    pub max_registers: u16,
    /// Most coils or discrete inputs in one read (Modbus allows 2000).
    pub max_bits: u16,
    /// Largest run of unused addresses a request may read across to join two tags.
    pub max_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_registers: 125,
            max_bits: 2000,
            max_gap: 8,
        }
    }
}

/// One read request and the tags it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indexes into the planned tags, with each tag's offset in the response.
    pub tags: Vec<(usize, u16)>,
}

/// Groups `tags` (index, address) into requests. Tags are sorted by table and start;
/// one request grows while the next tag starts within `max_gap` of its end and the
/// whole still fits the limit. A tag larger than the limit is refused.
pub fn plan(tags: &[(usize, Address)], limits: &Limits) -> Result<Vec<Request>, String> {
    let mut sorted: Vec<&(usize, Address)> = tags.iter().collect();
    sorted.sort_by_key(|(i, a)| (a.table, a.start, *i));
    let mut out: Vec<Request> = Vec::new();
    for (index, a) in sorted {
        let max = if a.table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        };
        if a.count > max {
            return Err(format!(
                "{a} takes {} registers, more than the {max} one request may read",
                a.count
            ));
        }
        if let Some(last) = out.last_mut() {
            let end = u32::from(last.start) + u32::from(last.count);
            let gap_ok = u32::from(a.start) <= end + u32::from(limits.max_gap);
            let new_end = end.max(a.end());
            let fits = new_end - u32::from(last.start) <= u32::from(max);
            if last.table == a.table && gap_ok && fits {
                last.count = (new_end - u32::from(last.start)) as u16;
                last.tags.push((*index, a.start - last.start));
                continue;
            }
        }
        out.push(Request {
            table: a.table,
            start: a.start,
            count: a.count,
            tags: vec![(*index, 0)],
        });
    }
    Ok(out)
}

/// Splits a request the device refused (an illegal-address exception for the whole
/// range) in two halves at a tag boundary, so the tags around a hole still read.
/// `None` when it serves a single tag (that tag is the bad address).
pub fn split(req: &Request, addresses: &[Address]) -> Option<(Request, Request)> {
    if req.tags.len() < 2 {
        return None;
    }
    let mid = req.tags.len() / 2;
    let part = |tags: &[(usize, u16)]| {
        let start = tags
            .iter()
            .map(|(i, _)| addresses[*i].start)
            .min()
            .unwrap_or(req.start);
        let end = tags
            .iter()
            .map(|(i, _)| addresses[*i].end())
            .max()
            .unwrap_or(u32::from(start));
        Request {
            table: req.table,
            start,
            count: (end - u32::from(start)) as u16,
            tags: tags
                .iter()
                .map(|(i, _)| (*i, addresses[*i].start - start))
                .collect(),
        }
    };
    Some((part(&req.tags[..mid]), part(&req.tags[mid..])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DataType;

    fn tags(list: &[(&str, DataType)]) -> Vec<(usize, Address)> {
        list.iter()
            .enumerate()
            .map(|(i, (a, t))| (i, Address::parse(a, *t).expect("address")))
            .collect()
    }

    #[test]
    fn neighbours_share_a_request_and_gaps_are_bridged_up_to_the_limit() {
        let t = tags(&[
            ("hr:0", DataType::U16),
            ("hr:1", DataType::F32),  // 1..3
            ("hr:10", DataType::U16), // gap of 7 after 3: bridged
            ("hr:30", DataType::U16), // gap of 19: new request
            ("ir:0", DataType::U16),  // another table: new request
            ("coil:5", DataType::Bool),
            ("coil:7", DataType::Bool),
        ]);
        let p = plan(&t, &Limits::default()).expect("plan");
        let shape: Vec<(Table, u16, u16, usize)> = p
            .iter()
            .map(|r| (r.table, r.start, r.count, r.tags.len()))
            .collect();
        assert_eq!(
            shape,
            [
                (Table::Coil, 5, 3, 2),
                (Table::InputRegister, 0, 1, 1),
                (Table::HoldingRegister, 0, 11, 3),
                (Table::HoldingRegister, 30, 1, 1),
            ]
        );
        assert_eq!(p[2].tags, [(0, 0), (1, 1), (2, 10)]);
    }

    #[test]
    fn a_hundred_registers_take_one_request_instead_of_a_hundred() {
        let list: Vec<(String, DataType)> = (0..100)
            .map(|i| (format!("hr:{i}"), DataType::U16))
            .collect();
        let refs: Vec<(&str, DataType)> = list.iter().map(|(a, t)| (a.as_str(), *t)).collect();
        let p = plan(&tags(&refs), &Limits::default()).expect("plan");
        assert_eq!(p.len(), 1, "100 naive requests become 1");
        // A device that takes at most 32 registers a request: 4 requests.
        let small = Limits {
            max_registers: 32,
            ..Limits::default()
        };
        assert_eq!(plan(&tags(&refs), &small).expect("plan").len(), 4);
        // No gap bridging: one request per isolated register.
        let sparse: Vec<(String, DataType)> = (0..10)
            .map(|i| (format!("hr:{}", i * 10), DataType::U16))
            .collect();
        let refs: Vec<(&str, DataType)> = sparse.iter().map(|(a, t)| (a.as_str(), *t)).collect();
        let strict = Limits {
            max_gap: 0,
            ..Limits::default()
        };
        assert_eq!(plan(&tags(&refs), &strict).expect("plan").len(), 10);
        assert_eq!(
            plan(
                &tags(&refs),
                &Limits {
                    max_gap: 9,
                    ..Limits::default()
                }
            )
            .expect("plan")
            .len(),
            1
        );
    }

    #[test]
    fn a_refused_range_splits_at_tag_boundaries() {
        let t = tags(&[
            ("hr:0", DataType::U16),
            ("hr:2", DataType::U16),
            ("hr:4", DataType::F32),
            ("hr:8", DataType::U16),
        ]);
        let addresses: Vec<Address> = t.iter().map(|(_, a)| *a).collect();
        let p = plan(&t, &Limits::default()).expect("plan");
        assert_eq!(p.len(), 1);
        let (a, b) = split(&p[0], &addresses).expect("split");
        assert_eq!((a.start, a.count, a.tags.len()), (0, 3, 2));
        assert_eq!((b.start, b.count, b.tags.len()), (4, 5, 2));
        assert_eq!(b.tags, [(2, 0), (3, 4)]);
        let (c, _) = split(&a, &addresses).expect("split again");
        assert!(
            split(&c, &addresses).is_none(),
            "one tag: it is the bad address"
        );
    }

    #[test]
    fn a_tag_larger_than_a_request_is_refused() {
        let t = tags(&[("hr:0;len=100", DataType::String)]);
        let small = Limits {
            max_registers: 50,
            ..Limits::default()
        };
        let e = plan(&t, &small).expect_err("too big");
        assert!(e.contains("more than the 50"), "{e}");
    }
}
