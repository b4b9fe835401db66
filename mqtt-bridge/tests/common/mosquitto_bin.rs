//! Where Mosquitto is installed. Shared with the simulator's tests
//! (`sim/tests/common/mod.rs` includes this file by path).

use std::path::PathBuf;

/// The mosquitto binary: on `PATH`, else Debian's `/usr/sbin/mosquitto`.
pub fn mosquitto_bin() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("mosquitto");
            if p.is_file() {
                return p;
            }
        }
    }
    let p = PathBuf::from("/usr/sbin/mosquitto");
    assert!(p.is_file(), "mosquitto is not installed: apt-get install -y mosquitto (scripts/test.sh does)");
    p
}
