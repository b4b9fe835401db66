//! Users' own keys with the real `p2pe-node account` commands: `import` from a private-key file, from
//! standard input and from a mnemonic at an index; `list` of a keystore directory (addresses read from
//! the files, as geth's `account list`); bad input refused with a reason that never quotes the key.

use std::io::Write;
use std::process::{Command, Stdio};

use p2pe_tests::harness::{dev_key, node_bin, run_err, run_ok, DEV_MNEMONIC};

fn account(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(node_bin());
    c.current_dir(dir).arg("account").args(args).env("P2PE_PASSWORD", "import pw");
    c
}

fn inspect(dir: &std::path::Path, file: &str) -> String {
    run_ok(&mut account(dir, &["inspect", file])).trim().to_string()
}

#[test]
fn import_from_a_file_standard_input_and_a_mnemonic_then_list() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let k1 = dev_key(5);
    let hex1 = alloy_primitives::hex::encode(k1.to_bytes());
    std::fs::write(dir.join("key.txt"), format!("0x{hex1}\n")).unwrap();
    let common = ["--keystore-dir", "keys", "--light-kdf"];

    let out =
        run_ok(account(dir, &["import", "--private-key-file", "key.txt", "--name", "a.json"]).args(common));
    assert_eq!(out.trim(), k1.address().to_string());
    assert_eq!(inspect(dir, "keys/a.json"), k1.address().to_string());

    // Standard input, no 0x.
    let k2 = dev_key(6);
    let mut child = account(dir, &["import", "--private-key-file", "-", "--name", "b.json"])
        .args(common)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", alloy_primitives::hex::encode(k2.to_bytes())).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), k2.address().to_string());

    // A mnemonic at index 3 is the dev chain's account 3.
    std::fs::write(dir.join("mnemonic.txt"), format!("{DEV_MNEMONIC}\n")).unwrap();
    let out = run_ok(
        account(dir, &["import", "--mnemonic-file", "mnemonic.txt", "--index", "3", "--name", "c.json"])
            .args(common),
    );
    assert_eq!(out.trim(), dev_key(3).address().to_string());

    // list: every keystore with its address; a stray file is skipped with the reason.
    std::fs::write(dir.join("keys/notes.txt"), "not a keystore").unwrap();
    let listed = run_ok(&mut account(dir, &["list", "--keystore-dir", "keys"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    for (line, (key, file)) in lines.iter().zip([
        (k1.address(), "a.json"),
        (k2.address(), "b.json"),
        (dev_key(3).address(), "c.json"),
    ]) {
        assert!(line.starts_with(&key.to_string()) && line.ends_with(file), "{line}");
    }

    // An existing file is never overwritten; bad keys and mnemonics are named, never quoted.
    let e =
        run_err(account(dir, &["import", "--private-key-file", "key.txt", "--name", "a.json"]).args(common));
    assert!(e.contains("not overwritten"), "{e}");
    std::fs::write(dir.join("bad.txt"), "0x1234\n").unwrap();
    let e = run_err(account(dir, &["import", "--private-key-file", "bad.txt"]).args(common));
    assert!(e.contains("32 bytes of hex") && !e.contains("1234"), "{e}");
    std::fs::write(dir.join("zero.txt"), format!("{}\n", "0".repeat(64))).unwrap();
    let e = run_err(account(dir, &["import", "--private-key-file", "zero.txt"]).args(common));
    assert!(e.contains("not a valid secp256k1 key"), "{e}");
    std::fs::write(dir.join("words.txt"), "correct horse battery staple\n").unwrap();
    let e = run_err(account(dir, &["import", "--mnemonic-file", "words.txt", "--index", "0"]).args(common));
    assert!(e.contains("BIP-39") && !e.contains("horse"), "{e}");
    let e = run_err(account(dir, &["import", "--mnemonic-file", "words.txt"]).args(common));
    assert!(e.contains("--index"), "{e}");
    assert!(
        !std::fs::read_to_string(dir.join("keys/a.json")).unwrap().contains(&hex1),
        "the key is encrypted"
    );
}
