//! The simulated Modbus devices of the `modbus` scenario: rodbus servers on loopback
//! (ThermaCore's PLC simulator), run in a child process of this binary so that the
//! devices' CPU and memory are measured apart from the server's.

use std::process::Stdio;

use thermacore::drivers::modbus::plc::{self, Bank, BankHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Unit ids a gateway hands out (1..=247, the addressable slaves of Modbus).
const MAX_UNITS: usize = 247;

/// Where device `d` lives: the index of its server and its unit id there.
/// `servers == 0` is one server per device.
pub fn placement(d: usize, devices: usize, servers: usize) -> (usize, u8) {
    let n = if servers == 0 { devices } else { servers };
    (d % n, (d / n + 1) as u8)
}

/// Checks that `devices` fit on `servers` (unit ids 1..=247 each).
pub fn check_layout(devices: usize, servers: usize) -> anyhow::Result<()> {
    anyhow::ensure!(devices > 0, "--devices must be at least 1");
    let n = if servers == 0 { devices } else { servers };
    anyhow::ensure!(
        n <= devices,
        "--servers {servers} is more than --devices {devices}"
    );
    anyhow::ensure!(
        devices.div_ceil(n) <= MAX_UNITS,
        "{devices} devices on {n} servers need more than {MAX_UNITS} unit ids per server"
    );
    Ok(())
}

/// The child process: binds one listener per server, prints `ready PORT…` on stdout,
/// serves until its stdin closes (the parent ended or dropped the pipe).
pub async fn serve(devices: usize, registers: u16, servers: usize) -> anyhow::Result<()> {
    check_layout(devices, servers)?;
    let n = if servers == 0 { devices } else { servers };
    let mut units: Vec<Vec<(u8, BankHandle)>> = vec![Vec::new(); n];
    for d in 0..devices {
        let (s, unit) = placement(d, devices, servers);
        units[s].push((unit, BankHandle::new(Bank::filled(registers))));
    }
    let mut handles = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    for u in &units {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        ports.push(listener.local_addr()?.port().to_string());
        handles.push(plc::serve(listener, u));
    }
    println!("ready {}", ports.join(" "));
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(handles);
    Ok(())
}

/// The running child and the ports of its servers.
pub struct Devices {
    pub child: Child,
    pub ports: Vec<u16>,
}

/// Starts the child (this same binary, subcommand `modbus-devices`) and waits until it
/// listens.
pub async fn spawn(devices: usize, registers: u16, servers: usize) -> anyhow::Result<Devices> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "modbus-devices",
            "--devices",
            &devices.to_string(),
            "--registers",
            &registers.to_string(),
            "--servers",
            &servers.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let ports = line
        .strip_prefix("ready ")
        .ok_or_else(|| anyhow::anyhow!("device simulator did not start: {line:?}"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<u16>, _>>()?;
    Ok(Devices { child, ports })
}
