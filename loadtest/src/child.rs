//! A load source run as a child process (this same binary with a hidden
//! subcommand), spoken to line by line: it says it is ready, answers `stats`
//! with numbers, and exits when its stdin closes.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct ChildPeer {
    /// What the child is, for errors ("publishers", "OPC UA servers").
    what: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    pub pid: String,
}

impl ChildPeer {
    /// Starts this binary with `args`; returns it and the first line it prints.
    pub async fn spawn(what: &'static str, args: &[String]) -> anyhow::Result<(ChildPeer, String)> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().map(|i| i.to_string()).unwrap_or_default();
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("{what}: no stdout"))?;
        let mut stdout = BufReader::new(stdout).lines();
        let first = stdout.next_line().await?.unwrap_or_default();
        let peer = ChildPeer {
            what,
            child,
            stdin,
            stdout,
            pid,
        };
        Ok((peer, first))
    }

    /// Asks for `stats` and returns the numbers of the answer (`stats N N …`).
    pub async fn stats(&mut self) -> anyhow::Result<Vec<u64>> {
        let what = self.what;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("{what} stopped"))?;
        stdin.write_all(b"stats\n").await?;
        stdin.flush().await?;
        let line = self.stdout.next_line().await?.unwrap_or_default();
        let numbers = line
            .strip_prefix("stats ")
            .ok_or_else(|| anyhow::anyhow!("{what} answered {line:?}"))?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(numbers)
    }

    /// Closes the child's stdin (it stops and exits), or kills it after `wait`.
    pub async fn stop(mut self, wait: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        if tokio::time::timeout(wait, self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// What a child that sets values in batches ("slices") has done: counted by its
/// tasks, reported by [`answer_stats`] as `stats UPDATES SLICES SLICE_US_SUM
/// SLICE_US_MAX` (the values set so far, the batches, the time spent applying them,
/// and the longest batch since the last `stats`).
#[derive(Default)]
pub struct SliceCounters {
    updates: AtomicU64,
    slices: AtomicU64,
    slice_us_sum: AtomicU64,
    slice_us_max: AtomicU64,
}

impl SliceCounters {
    /// One batch of `values` values that took `us` microseconds to apply.
    pub fn record(&self, values: usize, us: u64) {
        self.updates.fetch_add(values as u64, Ordering::Relaxed);
        self.slices.fetch_add(1, Ordering::Relaxed);
        self.slice_us_sum.fetch_add(us, Ordering::Relaxed);
        self.slice_us_max.fetch_max(us, Ordering::Relaxed);
    }
}

/// In the child: answers every `stats` line of stdin with the counters, until stdin
/// closes.
pub async fn answer_stats(c: &SliceCounters) -> std::io::Result<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "stats" {
            println!(
                "stats {} {} {} {}",
                c.updates.load(Ordering::Relaxed),
                c.slices.load(Ordering::Relaxed),
                c.slice_us_sum.load(Ordering::Relaxed),
                c.slice_us_max.swap(0, Ordering::Relaxed)
            );
        }
    }
    Ok(())
}

/// The counters of a [`SliceCounters`] child at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceStats {
    pub updates: u64,
    pub slices: u64,
    pub slice_us_sum: u64,
    /// The longest batch since the previous stats.
    pub slice_us_max: u64,
}

impl ChildPeer {
    /// Asks a [`SliceCounters`] child for its counters.
    pub async fn slice_stats(&mut self) -> anyhow::Result<SliceStats> {
        match self.stats().await?[..] {
            [updates, slices, slice_us_sum, slice_us_max] => Ok(SliceStats {
                updates,
                slices,
                slice_us_sum,
                slice_us_max,
            }),
            ref other => anyhow::bail!("{} answered {other:?}", self.what),
        }
    }
}
