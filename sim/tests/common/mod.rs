//! Test fixtures shared by the simulator's end-to-end tests: a real Mosquitto broker.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_tests::harness::mosquitto_bin;

/// A Mosquitto broker on a free loopback port, killed when dropped.
pub struct Mosquitto {
    child: Child,
    /// Its loopback port.
    pub port: u16,
}

impl Mosquitto {
    /// Starts Mosquitto with a configuration written into `dir`.
    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\nmax_queued_messages 100000\nlog_dest file {}\n",
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
