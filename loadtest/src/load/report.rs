//! The run's report: printed for people, written as JSON for tools, and the
//! progress line while it runs.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::stats::{Figures, Recorder, round};

/// The machine the generator runs on (the server too, when started).
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|r| r.split_once(':'))
        .map(|(_, m)| m.trim().to_string());
    let mem_kib: Option<u64> = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_model": model,
        "memory_gib": mem_kib.map(|k| round(k as f64 / 1048576.0, 1)),
        "kernel": kernel,
    })
}

/// One interval of the run.
pub fn interval(
    t_secs: f64,
    secs: f64,
    figures: &[(&'static str, Figures)],
    usage: Option<(f64, f64)>,
) -> Value {
    let ops: serde_json::Map<String, Value> = figures
        .iter()
        .map(|(k, f)| {
            (
                k.to_string(),
                json!({"per_sec": round(f.count as f64 / secs, 1), "p50_ms": round(f.p50_ms, 3), "p99_ms": round(f.p99_ms, 3)}),
            )
        })
        .collect();
    json!({
        "t_secs": round(t_secs, 1),
        "operations": ops,
        "server_cpu_cores": usage.map(|u| round(u.0, 3)),
        "server_rss_mib": usage.map(|u| round(u.1, 1)),
    })
}

/// Drift over the intervals: the first and last interval's figures (memory, and the
/// p99 of every operation).
pub fn drift(intervals: &[Value]) -> Value {
    let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else {
        return Value::Null;
    };
    let mut ops = serde_json::Map::new();
    if let Some(o) = last["operations"].as_object() {
        for k in o.keys() {
            ops.insert(
                k.clone(),
                json!({"p99_first_ms": first["operations"][k]["p99_ms"], "p99_last_ms": last["operations"][k]["p99_ms"]}),
            );
        }
    }
    json!({
        "server_rss_first_mib": first["server_rss_mib"],
        "server_rss_last_mib": last["server_rss_mib"],
        "operations": ops,
    })
}

/// The progress line: elapsed time, phase, and per operation its rate and the
/// current interval's p99.
pub struct Progress {
    tty: bool,
    last: Vec<(&'static str, u64, u64)>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: Vec::new(),
        }
    }

    pub fn tick(
        &mut self,
        rec: &Recorder,
        phase: &str,
        elapsed: u64,
        total: u64,
        usage: Option<(f64, f64)>,
        every: u64,
    ) {
        let now = rec.totals();
        let p99 = rec.interval_p99();
        let mut line = format!("[{elapsed:>5}/{total} s] {phase}");
        for (op, count, errors) in &now {
            let before = self
                .last
                .iter()
                .find(|l| l.0 == *op)
                .map_or((0, 0), |l| (l.1, l.2));
            let p = p99.iter().find(|p| p.0 == *op).map_or(0.0, |p| p.1);
            line.push_str(&format!(" | {op} {}/s p99 {p:.1} ms", count - before.0));
            if errors > &before.1 {
                line.push_str(&format!(" err {}", errors - before.1));
            }
        }
        if let Some((cpu, rss)) = usage {
            line.push_str(&format!(" | server {cpu:.2} cores {rss:.0} MiB"));
        }
        self.last = now;
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{line}");
        } else if elapsed % every == 0 {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Prints the report's figures, one line per operation.
pub fn print(report: &Value) {
    println!(
        "{} — {} s measured on {} CPUs ({})",
        report["scenario"].as_str().unwrap_or("?"),
        report["duration_secs"],
        report["machine"]["cpus"],
        report["machine"]["cpu_model"]
            .as_str()
            .unwrap_or("unknown CPU"),
    );
    if let Some(ops) = report["operations"].as_object() {
        for (k, o) in ops {
            let l = &o["latency_ms"];
            println!(
                "  {k:<22} {:>10}/s  p50 {} ms  p95 {} ms  p99 {} ms  max {} ms  errors {}",
                o["per_sec"], l["p50"], l["p95"], l["p99"], l["max"], o["errors"]
            );
        }
    }
    if let Some(c) = report["counters"].as_object() {
        for (k, v) in c {
            println!("  {k:<22} {v}");
        }
    }
    if let Some(errors) = report["errors"].as_object().filter(|e| !e.is_empty()) {
        println!("  errors by kind:");
        for (k, v) in errors {
            println!("    {k}: {v}");
        }
    }
    let s = &report["server"];
    println!(
        "  server: {} cores, peak {} MiB; {}",
        s["cpu_cores"], s["peak_rss_mib"], report["server_metrics"]
    );
}

pub fn write(path: &Path, report: &Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Medians over several runs' reports: per operation its rate and latency
/// quantiles, the server's CPU and peak memory, and every server metric figure.
pub fn medians(reports: &[Value]) -> Value {
    let at = |path: &[&str]| -> Option<f64> {
        median(
            reports
                .iter()
                .filter_map(|r| path.iter().try_fold(r, |v, k| v.get(*k))?.as_f64())
                .collect(),
        )
    };
    let mut ops = serde_json::Map::new();
    if let Some(first) = reports.first().and_then(|r| r["operations"].as_object()) {
        for k in first.keys() {
            let mut o = serde_json::Map::new();
            o.insert("per_sec".into(), json!(at(&["operations", k, "per_sec"])));
            o.insert("errors".into(), json!(at(&["operations", k, "errors"])));
            for q in ["p50", "p95", "p99", "max"] {
                o.insert(
                    format!("{q}_ms"),
                    json!(at(&["operations", k, "latency_ms", q])),
                );
            }
            ops.insert(k.clone(), Value::Object(o));
        }
    }
    let mut server = serde_json::Map::new();
    if let Some(first) = reports
        .first()
        .and_then(|r| r["server_metrics"].as_object())
    {
        for (k, v) in first {
            if v.is_number() {
                server.insert(k.clone(), json!(at(&["server_metrics", k])));
            } else if let Some(q) = v.as_object() {
                let m: serde_json::Map<String, Value> = q
                    .keys()
                    .map(|qk| (qk.clone(), json!(at(&["server_metrics", k, qk]))))
                    .collect();
                server.insert(k.clone(), Value::Object(m));
            }
        }
    }
    json!({
        "scenario": reports.first().map(|r| r["scenario"].clone()),
        "runs": reports.len(),
        "machine": reports.first().map(|r| r["machine"].clone()),
        "operations": ops,
        "server_cpu_cores": at(&["server", "cpu_cores"]),
        "server_peak_rss_mib": at(&["server", "peak_rss_mib"]),
        "generator_cpu_cores": at(&["generator", "cpu_cores"]),
        "server_metrics": server,
    })
}

pub fn print_medians(m: &Value) {
    println!("medians of {} runs:", m["runs"]);
    if let Some(ops) = m["operations"].as_object() {
        for (k, o) in ops {
            println!(
                "  {k:<22} {:>10}/s  p50 {} ms  p95 {} ms  p99 {} ms  max {} ms  errors {}",
                o["per_sec"], o["p50_ms"], o["p95_ms"], o["p99_ms"], o["max_ms"], o["errors"]
            );
        }
    }
    println!(
        "  server: {} cores, peak {} MiB",
        m["server_cpu_cores"], m["server_peak_rss_mib"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_are_taken_per_figure_over_the_runs() {
        let run = |rate: f64, p99: f64, cpu: f64| {
            json!({"scenario": "queries", "operations": {"latest": {"per_sec": rate, "errors": 0, "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": p99, "max": 9.0}}},
                   "server": {"cpu_cores": cpu, "peak_rss_mib": 100.0}, "server_metrics": {"samples_ingested_per_sec": rate, "device_poll_lag_ms": {"p50": 1.0, "p99": p99}}})
        };
        let m = medians(&[
            run(10.0, 5.0, 0.5),
            run(30.0, 1.0, 0.7),
            run(20.0, 3.0, 0.9),
        ]);
        assert_eq!(m["operations"]["latest"]["per_sec"], 20.0);
        assert_eq!(m["operations"]["latest"]["p99_ms"], 3.0);
        assert_eq!(m["server_cpu_cores"], 0.7);
        assert_eq!(m["server_metrics"]["device_poll_lag_ms"]["p99"], 3.0);
        assert_eq!(median(vec![1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
