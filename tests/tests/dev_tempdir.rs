//! `p2pe-node dev` without `--datadir` keeps its chain in a temporary directory (README,
//! "Development chain"): there while it runs, removed when it exits on SIGTERM or Ctrl-C (SIGINT),
//! left behind by SIGKILL, which no process can act on; also when the signal comes the moment the
//! node has announced that it serves.

use std::path::Path;
use std::process::Command;

use p2pe_tests::harness::NodeProcess;

/// The entries of the node's `TMPDIR`.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

fn exits_clean_on(signal: &str) {
    let mut node = NodeProcess::dev(&["--period", "1"]);
    let running = entries(node.tmp_dir());
    assert!(
        running.len() == 1 && running[0].starts_with("p2pe-dev-"),
        "one chain directory while it runs: {running:?}"
    );
    let chain = node.tmp_dir().join(&running[0]);
    assert!(chain.join("chain.sqlite").is_file(), "the chain's database is in it: {:?}", entries(&chain));
    Command::new("kill").arg(format!("-{signal}")).arg(node.pid().to_string()).status().unwrap();
    let status = node.wait();
    assert!(status.success(), "exit after SIG{signal}: {status:?}");
    assert_eq!(
        entries(node.tmp_dir()),
        Vec::<String>::new(),
        "the chain directory is removed after SIG{signal}"
    );
}

#[test]
fn the_temporary_chain_is_removed_on_sigterm() {
    exits_clean_on("TERM");
}

#[test]
fn the_temporary_chain_is_removed_on_ctrl_c() {
    exits_clean_on("INT");
}

/// SIGTERM as soon as the node has announced its JSON-RPC address, five times: the handlers are
/// installed before the announcement (once they came after it, and a signal in between killed
/// the node, exit status 15, leaving its chain behind).
#[test]
fn a_sigterm_right_after_the_announcement_is_a_clean_exit() {
    for _ in 0..5 {
        let mut node = NodeProcess::dev(&["--period", "1"]);
        let status = node.terminate();
        assert!(status.success(), "exit after an immediate SIGTERM: {status:?}");
        assert_eq!(entries(node.tmp_dir()), Vec::<String>::new(), "the chain directory is removed");
    }
}

#[test]
fn the_temporary_chain_is_left_by_sigkill() {
    let mut node = NodeProcess::dev(&["--period", "1"]);
    node.kill9();
    let left = entries(node.tmp_dir());
    assert!(left.len() == 1 && left[0].starts_with("p2pe-dev-"), "SIGKILL leaves the chain: {left:?}");
}
