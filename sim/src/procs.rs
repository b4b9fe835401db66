//! Child processes (the node and the bridge): locating the binaries, logging their output to files,
//! waiting for their ready line, and stopping them (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A child process stopped when dropped.
pub struct ChildProcess {
    name: String,
    child: Child,
}

impl ChildProcess {
    /// Spawns `cmd`, copies its stdout and stderr to `log`, and waits up to `timeout` for a stdout
    /// line starting with `ready`; returns the process and that line.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        log: &Path,
        ready: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Self, String)> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let file2 = file.try_clone()?;
        let (tx, rx) = mpsc::channel::<String>();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut f = file;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{line}");
                if line.starts_with(&ready) {
                    let _ = tx.send(line);
                }
            }
        });
        std::thread::spawn(move || {
            let mut f = file2;
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = writeln!(f, "{line}");
            }
        });
        let mut p = Self { name: name.to_string(), child };
        let start = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => return Ok((p, line)),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = p.child.try_wait()? {
                        bail!("{name} exited ({status}) before it was ready; see {}", log.display());
                    }
                    if start.elapsed() > timeout {
                        bail!("{name} was not ready after {timeout:?}; see {}", log.display());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = p.child.wait()?;
                    bail!("{name} exited ({status}) before it was ready; see {}", log.display());
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, waits up to `grace`, then kills.
    pub fn stop(&mut self, grace: Duration) {
        if !self.running() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(name = %self.name, "did not stop after SIGTERM; killing");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Finds a workspace binary: `$env_var`, else next to this executable, else on `PATH`. When it is
/// missing and this executable lives in a Cargo target directory of the workspace, builds it
/// there (same profile) first, so that `cargo run -p p2pe-sim` needs nothing else.
pub fn find_binary(name: &str, env_var: &str, package: &str) -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{env_var}={} does not exist", p.display());
    }
    let exe = std::env::current_exe().context("current executable")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    // Tests run from target/<profile>/deps.
    let dirs = [dir.clone(), dir.parent().map(Path::to_path_buf).unwrap_or_default()];
    for d in &dirs {
        let p = d.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf);
    let profile_dir = dirs.iter().find(|d| d.file_name().is_some_and(|n| n == "debug" || n == "release"));
    if let (Some(ws), Some(pd)) = (workspace, profile_dir) {
        if ws.join("Cargo.toml").is_file() {
            let release = pd.file_name().is_some_and(|n| n == "release");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            eprintln!(
                "{name} is not built yet: building it (cargo build{} -p {package})",
                if release { " --release" } else { "" }
            );
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&ws).args(["build", "-p", package]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().context("running cargo")?;
            if !status.success() {
                bail!("building {package} failed");
            }
            let p = pd.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!("{name} not found: set {env_var}, put it on PATH, or build it with `cargo build -p {package}`")
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
