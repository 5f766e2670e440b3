//! Servers that the compatibility suite and the benchmark start as child
//! processes: our binary, and workerd with a generated configuration. Both
//! include this file (`#[path]`), so that the two compare the runtimes the
//! same way.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A server under test, stopped when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The resident set size of the server process, in KiB.
    #[allow(dead_code, reason = "the benchmark reads it, the suite does not")]
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Starts our binary with `args` (which should include `--addr
/// 127.0.0.1:0`) and waits for its listening line.
pub(crate) fn start_ours<I, S>(binary: &str, args: I) -> Server
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("our binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("a listening line")
            .expect("readable output");
        if let Some(url) = line.strip_prefix("go-go-objects listening on ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base }
}

/// A loopback port nothing listens on (now).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `config` (a workerd Cap'n Proto configuration whose socket
/// listens on 127.0.0.1:`port`) into `dir`, starts workerd on it and waits
/// until the port answers.
pub(crate) fn start_workerd(binary: &str, dir: &Path, config: &str, port: u16) -> Server {
    std::fs::write(dir.join("config.capnp"), config).unwrap();
    let child = Command::new(binary)
        .arg("serve")
        .arg(dir.join("config.capnp"))
        .arg("--experimental")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("workerd starts");
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}
