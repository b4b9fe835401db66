//! The command line: `--check` validates a configuration and decrypts its keystores; a bad
//! configuration exits with status 2 and an error naming the key; a keystore that does not hold the
//! configured address is refused; no key material is printed.

use std::process::Command;

use p2pe_tests::bridge::*;

fn config(dir: &std::path::Path, address: &str, keystore_idx: usize, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("pw"), format!("{KEY_PASSWORD}\n")).unwrap();
    let text = format!(
        "[broker]\nurl = \"mqtt://127.0.0.1:1\"\nclient_id = \"cli-test\"\n\n\
         [chain]\nrpc_urls = [\"http://127.0.0.1:1\"]\nreadings = \"0x00000000000000000000000000000000000000aa\"\n\n\
         [outbox]\npath = \"o.sqlite\"\n\n[keys]\npassword_file = \"pw\"\n\n\
         [meters.house-01]\naddress = \"{address}\"\nkeystore = \"{}\"\nformat = \"json\"\ntopic = \"meters/house-01/reading\"\n{extra}",
        keystore(keystore_idx).display()
    );
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run_bridge(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = Command::new(bridge_bin()).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_accepts_a_good_config_and_names_the_key_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = meter_addresses();
    let good = config(dir.path(), &addrs[0].to_string(), 0, "");
    let (code, text) = run_bridge(&["--config".as_ref(), good.as_os_str(), "--check".as_ref()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("config ok: 1 meters"), "{text}");
    let key_hex = alloy_primitives::hex::encode(meter_signer(0).credential().to_bytes());
    assert!(!text.contains(&key_hex));

    let bad = config(dir.path(), "0x1234", 0, "");
    let (code, text) = run_bridge(&["--config".as_ref(), bad.as_os_str(), "--check".as_ref()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("config key `meters.house-01.address`"), "{text}");

    let typo = config(dir.path(), &addrs[0].to_string(), 0, "chanel = 1\n");
    let (code, text) = run_bridge(&["--config".as_ref(), typo.as_os_str()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("config key `meters.house-01.chanel`: unknown key"), "{text}");

    // The keystore of meter 1 does not hold meter 0's address.
    let wrong = config(dir.path(), &addrs[0].to_string(), 1, "");
    let (code, text) = run_bridge(&["--config".as_ref(), wrong.as_os_str(), "--check".as_ref()]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("config key `meters.house-01.keystore`") && text.contains("not the configured address"),
        "{text}"
    );

    // A wrong password names the keystore key, not the password.
    std::fs::write(dir.path().join("pw"), "wrong\n").unwrap();
    let (code, text) = run_bridge(&["--config".as_ref(), wrong.as_os_str(), "--check".as_ref()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("meters.house-01.keystore") && text.contains("cannot decrypt"), "{text}");
}
