//! The processes under test: spawned from built binaries on free loopback ports, health-checked, stopped
//! with SIGTERM (SIGKILL if they overstay), and killed if the benchmark itself fails half-way.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::client::Connection;

/// How often health and exit are polled.
const POLL: Duration = Duration::from_millis(50);

/// A free port on 127.0.0.1 (the OS picks it; it is released just before the service binds it).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?)
}

/// A running child process with an HTTP `/health` on `addr`.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Process {
    /// Starts `program args…` with `env` added, its output going to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        addr: SocketAddr,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            // The run says which Redis each service uses: one inherited from the shell would override
            // `REDIS_URL` behind its back.
            .env_remove("REDIS_CLUSTER_NODES")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            addr,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until `GET /health` answers 200, at most `timeout`; fails at once if the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut connection = Connection::new(self.addr);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited at start ({status}); {}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(answer) = connection.get("/health").await
                && answer.status.is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} not healthy on {} within {timeout:?}; {}",
                    self.name,
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. The exit status.
    pub async fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        terminate(self.child.id());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        bail!(
            "{} did not stop within {grace:?} of SIGTERM; killed ({status})",
            self.name
        )
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(8).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!("log {}:\n{}", self.log.display(), tail.join("\n"))
    }
}

impl Drop for Process {
    /// A benchmark that fails half-way must not leave services running: SIGKILL what is still alive.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGTERM through `kill(1)` (the workspace forbids `unsafe`, which `libc::kill` would need).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
