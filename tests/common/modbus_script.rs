//! A scripted Modbus TCP server for interoperability tests, written from the public
//! specification only (Modbus Application Protocol V1.1b3, Modbus Messaging on TCP/IP
//! Implementation Guide): a test decides, request by request, what a device answers —
//! the conformant answer, fewer registers, an exception, garbage, silence or a close —
//! and how its connections end (idle close, close after K requests). It counts what it
//! saw and sent so that a test can prove a behaviour happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The device's register (and bit) map: the value at every address.
pub fn value(addr: u16) -> u16 {
    addr.wrapping_mul(3).wrapping_add(1000)
}

/// The bit at `addr` of the coil and discrete-input tables.
pub fn bit(addr: u16) -> bool {
    addr % 3 == 0
}

/// One decoded request (ADU = MBAP header + PDU).
#[derive(Debug, Clone)]
pub struct Req {
    pub tid: u16,
    pub unit: u8,
    pub function: u8,
    /// Starting address and quantity of a read (FC 1..=4); 0 for other functions.
    pub start: u16,
    pub quantity: u16,
    /// The whole PDU (function code first).
    pub pdu: Vec<u8>,
}

/// What the device answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The conformant answer from the map ([`value`], [`bit`]).
    Normal,
    /// FC 3/4 answered with these registers (and their true byte count), whatever
    /// quantity was asked.
    Registers(Vec<u16>),
    /// An exception response: function code | 0x80, then this code.
    Exception(u8),
    /// This PDU, framed with the request's MBAP header (transaction and unit id).
    Pdu(Vec<u8>),
    /// These bytes as they are, instead of a framed answer.
    Bytes(Vec<u8>),
    /// No answer; the connection stays open.
    Silent,
    /// No answer; the server closes the connection.
    Close,
}

/// Decides the answer to each request; replaceable while the server runs.
pub type Script = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

/// How the server treats its connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Close a connection that carried no request for this long.
    pub idle_close: Option<Duration>,
    /// Close a connection after answering this many requests.
    pub close_after: Option<usize>,
}

/// What the server saw and did.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    pub exceptions: AtomicUsize,
    /// Closes the server made (idle, after K requests, or [`Reply::Close`]).
    pub closes: AtomicUsize,
    /// The largest read quantity asked for.
    pub max_quantity: AtomicUsize,
    /// Every unit id addressed, in order of first use.
    pub units: Mutex<Vec<u8>>,
}

impl Stats {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn exceptions(&self) -> usize {
        self.exceptions.load(Ordering::SeqCst)
    }
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }
    pub fn max_quantity(&self) -> usize {
        self.max_quantity.load(Ordering::SeqCst)
    }
    pub fn units(&self) -> Vec<u8> {
        self.units.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A running scripted server on 127.0.0.1 (an ephemeral port); stops when dropped.
pub struct ScriptServer {
    pub port: u16,
    pub stats: Arc<Stats>,
    script: Arc<Mutex<Script>>,
    task: JoinHandle<()>,
}

impl ScriptServer {
    pub async fn start(options: Options, script: Script) -> ScriptServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stats = Arc::new(Stats::default());
        let script = Arc::new(Mutex::new(script));
        let (s, sc) = (stats.clone(), script.clone());
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) aborts every connection.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        s.connections.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(serve(stream, options, s.clone(), sc.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        ScriptServer {
            port,
            stats,
            script,
            task,
        }
    }

    /// A server that answers every request conformantly.
    pub async fn normal(options: Options) -> ScriptServer {
        ScriptServer::start(options, Arc::new(|_| Reply::Normal)).await
    }

    /// Replaces the script: the next request is answered by `script`.
    pub fn set(&self, script: Script) {
        *self.script.lock().unwrap_or_else(|p| p.into_inner()) = script;
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection until the peer or the script ends it.
async fn serve(
    mut stream: TcpStream,
    options: Options,
    stats: Arc<Stats>,
    script: Arc<Mutex<Script>>,
) {
    let mut answered = 0usize;
    loop {
        // MBAP header: transaction id, protocol id, length, unit id.
        let mut header = [0u8; 7];
        let read = stream.read_exact(&mut header);
        let got = match options.idle_close {
            Some(idle) => match tokio::time::timeout(idle, read).await {
                Ok(r) => r,
                Err(_) => {
                    stats.closes.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            None => read.await,
        };
        if got.is_err() {
            return;
        }
        let tid = u16::from_be_bytes([header[0], header[1]]);
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let unit = header[6];
        if protocol != 0 || !(2..=254).contains(&length) {
            return; // not Modbus: the spec lets the server drop the connection
        }
        let mut pdu = vec![0u8; length - 1];
        if stream.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let function = pdu[0];
        let (start, quantity) = match (function, pdu.len()) {
            (1..=4, 5..) => (
                u16::from_be_bytes([pdu[1], pdu[2]]),
                u16::from_be_bytes([pdu[3], pdu[4]]),
            ),
            _ => (0, 0),
        };
        stats.requests.fetch_add(1, Ordering::SeqCst);
        stats
            .max_quantity
            .fetch_max(usize::from(quantity), Ordering::SeqCst);
        {
            let mut units = stats.units.lock().unwrap_or_else(|p| p.into_inner());
            if !units.contains(&unit) {
                units.push(unit);
            }
        }
        let req = Req {
            tid,
            unit,
            function,
            start,
            quantity,
            pdu,
        };
        let current = script.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let reply = current(&req);
        let bytes = match reply {
            Reply::Silent => continue,
            Reply::Close => {
                stats.closes.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Reply::Bytes(b) => b,
            Reply::Normal => frame(&req, &normal(&req)),
            Reply::Registers(regs) => frame(&req, &registers(function, &regs)),
            Reply::Exception(code) => frame(&req, &[function | 0x80, code]),
            Reply::Pdu(p) => frame(&req, &p),
        };
        if bytes.len() > 7 && bytes[7] & 0x80 != 0 {
            stats.exceptions.fetch_add(1, Ordering::SeqCst);
        }
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        answered += 1;
        if options.close_after.is_some_and(|k| answered >= k) {
            stats.closes.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// The ADU of an answer: MBAP header echoing the request's transaction and unit ids.
pub fn frame(req: &Req, pdu: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + pdu.len());
    out.extend_from_slice(&req.tid.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
    out.push(req.unit);
    out.extend_from_slice(pdu);
    out
}

/// FC 3/4 answer: function code, byte count, registers big-endian.
pub fn registers(function: u8, regs: &[u16]) -> Vec<u8> {
    let mut out = vec![function, (regs.len() * 2) as u8];
    for r in regs {
        out.extend_from_slice(&r.to_be_bytes());
    }
    out
}

/// The conformant answer to `req` from the map; exceptions for what the spec refuses.
pub fn normal(req: &Req) -> Vec<u8> {
    let (f, start, qty) = (req.function, req.start, req.quantity);
    let end = u32::from(start) + u32::from(qty);
    match f {
        1 | 2 => {
            if !(1..=2000).contains(&qty) || req.pdu.len() != 5 {
                return vec![f | 0x80, 3];
            }
            if end > 0x1_0000 {
                return vec![f | 0x80, 2];
            }
            let mut packed = vec![0u8; usize::from(qty).div_ceil(8)];
            for i in 0..qty {
                if bit(start + i) {
                    packed[usize::from(i / 8)] |= 1 << (i % 8); // LSB first
                }
            }
            let mut out = vec![f, packed.len() as u8];
            out.extend_from_slice(&packed);
            out
        }
        3 | 4 => {
            if !(1..=125).contains(&qty) || req.pdu.len() != 5 {
                return vec![f | 0x80, 3];
            }
            if end > 0x1_0000 {
                return vec![f | 0x80, 2];
            }
            let regs: Vec<u16> = (u32::from(start)..end).map(|a| value(a as u16)).collect();
            registers(f, &regs)
        }
        // Write single coil / register: the answer echoes the request.
        5 | 6 if req.pdu.len() == 5 => req.pdu.clone(),
        // Write multiple coils / registers: function, start, quantity.
        15 | 16 if req.pdu.len() >= 6 => req.pdu[..5].to_vec(),
        _ => vec![f | 0x80, 1],
    }
}
