//! A load source run as a child process (this same binary with a hidden
//! subcommand), spoken to line by line: it says it is ready, answers `stats`
//! with numbers, and exits when its stdin closes.

use std::process::Stdio;
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
