//! Keys at rest, with real `p2pe-node` processes: `account new` writes a keystore with geth's
//! standard scrypt cost, mode 0600, never over an existing file, and reports the file it wrote;
//! `testnet` writes its password file and keystores 0600; a node identity that cannot be read or
//! decoded stops the node and is never replaced.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p2pe_tests::harness::{node_bin, run_err, run_ok};
use serde_json::Value;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn kdfparams(path: &Path) -> Value {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("keystore")).expect("JSON");
    assert_eq!(json["crypto"]["kdf"], "scrypt", "{json}");
    json["crypto"]["kdfparams"].clone()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `account new` with `args`; returns (stdout, stderr).
fn account_new(dir: &Path, pw: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(node_bin())
        .args(["account", "new", "--keystore-dir"])
        .arg(dir)
        .arg("--password-file")
        .arg(pw)
        .args(args)
        .output()
        .expect("run account new");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(out.status.success(), "account new failed: {stdout}{stderr}");
    (stdout, stderr)
}

#[test]
fn account_new_writes_a_standard_scrypt_keystore_0600_and_reports_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let keys = tmp.path().join("keys");

    let (stdout, stderr) = account_new(&keys, &pw, &["--name", "signer.json"]);
    let file = keys.join("signer.json");
    assert!(stderr.contains(&format!("Keystore written to {}", file.display())), "{stderr}");
    assert_eq!(names(&keys), ["signer.json"], "one file, no temporary left behind");
    assert_eq!(mode(&file), 0o600);
    let p = kdfparams(&file);
    assert_eq!((p["n"].as_u64(), p["r"].as_u64(), p["p"].as_u64()), (Some(262_144), Some(8), Some(1)), "{p}");
    let address = stdout.trim();
    let inspected = run_ok(
        Command::new(node_bin()).args(["account", "inspect"]).arg(&file).arg("--password-file").arg(&pw),
    );
    assert_eq!(inspected.trim(), address, "the keystore decrypts to the address printed");

    // An existing file is never overwritten.
    let before = std::fs::read(&file).unwrap();
    let err = run_err(
        Command::new(node_bin())
            .args(["account", "new", "--light-kdf", "--name", "signer.json", "--keystore-dir"])
            .arg(&keys)
            .arg("--password-file")
            .arg(&pw),
    );
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_eq!(names(&keys), ["signer.json"]);

    // Without --name the file is named by its UUID, and the message names that file; --light-kdf
    // is geth's light cost.
    let (_, stderr) = account_new(&keys, &pw, &["--light-kdf"]);
    let written = stderr.trim().strip_prefix("Keystore written to ").unwrap_or_else(|| panic!("{stderr}"));
    let written = Path::new(written);
    assert!(written.exists(), "reported {written:?}, which does not exist");
    assert_eq!(written.parent(), Some(keys.as_path()));
    assert_eq!(mode(written), 0o600);
    let p = kdfparams(written);
    assert_eq!((p["n"].as_u64(), p["p"].as_u64()), (Some(4096), Some(6)), "{p}");
    assert_eq!(names(&keys).len(), 2);
}

#[test]
fn testnet_writes_its_password_keystores_and_identities_0600() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, args, n) in [("std", &[][..], 262_144), ("light", &["--light-kdf"][..], 4096)] {
        let dir = tmp.path().join(dir);
        run_ok(
            Command::new(node_bin())
                .args(["testnet", "--generate-only", "--signers", "1", "--followers", "1", "--dir"])
                .arg(&dir)
                .args(args),
        );
        let keystore = dir.join("signer-0/keystore.json");
        for f in [dir.join("password.txt"), keystore.clone(), dir.join("signer-0/data/p2p-identity.key")] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(&dir.join("follower-0/data/p2p-identity.key")), 0o600);
        assert_eq!(kdfparams(&keystore)["n"].as_u64(), Some(n));
        let address = run_ok(
            Command::new(node_bin())
                .args(["account", "inspect"])
                .arg(&keystore)
                .arg("--password-file")
                .arg(dir.join("password.txt")),
        );
        let nodes: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("testnet.json")).unwrap()).unwrap();
        assert_eq!(address.trim().to_lowercase(), nodes[0]["signer"].as_str().unwrap().to_lowercase());
    }
}

/// Runs `p2pe-node run` on `datadir` (peer network on) and returns its output; it must exit with
/// an error within 60 s.
fn run_must_fail(datadir: &Path) -> String {
    let mut child = Command::new(node_bin())
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--p2p-addr",
            "127.0.0.1",
            "--p2p-port",
            "0",
            "--datadir",
        ])
        .arg(datadir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn p2pe-node run");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the node kept running with a bad identity file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn an_identity_that_cannot_be_read_stops_the_node_and_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    run_ok(
        Command::new(node_bin())
            .args([
                "testnet",
                "--generate-only",
                "--light-kdf",
                "--signers",
                "1",
                "--followers",
                "1",
                "--dir",
            ])
            .arg(&dir),
    );
    let datadir = dir.join("follower-0/data");
    let identity = datadir.join("p2p-identity.key");

    // Unreadable: a directory where the key file should be (EISDIR; as root, modes do not stop reads).
    std::fs::remove_file(&identity).unwrap();
    std::fs::create_dir(&identity).unwrap();
    std::fs::write(identity.join("keep"), b"x").unwrap();
    let out = run_must_fail(&datadir);
    assert!(out.contains("cannot read the node identity") && out.contains("p2p-identity.key"), "{out}");
    assert!(identity.is_dir() && identity.join("keep").exists(), "the unreadable identity was replaced");

    // Not a key: refused, the file left as it was.
    std::fs::remove_dir_all(&identity).unwrap();
    std::fs::write(&identity, b"not a protobuf key").unwrap();
    let out = run_must_fail(&datadir);
    assert!(out.contains("is not a node identity key"), "{out}");
    assert_eq!(std::fs::read(&identity).unwrap(), b"not a protobuf key");
}
