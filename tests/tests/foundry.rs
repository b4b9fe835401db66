//! Foundry against a real dev node, with default fee settings: `forge create` deploys a
//! contract that uses PUSH0, MCOPY, transient storage and CLZ; `cast send` and `cast call` use
//! it, including from an account that holds no ether at all.

use std::process::Command;
use std::time::Duration;

use p2pe_tests::harness::{npm_tool, run_any, run_ok, workspace_root, NodeProcess, DEV_MNEMONIC};
use serde_json::json;

fn fixture() -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/osaka")
}

fn forge_create(url: &str) -> String {
    let out = run_ok(Command::new(npm_tool("forge")).current_dir(fixture()).args([
        "create",
        "src/Osaka.sol:Osaka",
        "--broadcast",
        "--rpc-url",
        url,
        "--mnemonic",
        DEV_MNEMONIC,
    ]));
    out.lines()
        .find_map(|l| l.strip_prefix("Deployed to: "))
        .unwrap_or_else(|| panic!("no address in forge output: {out}"))
        .trim()
        .to_string()
}

#[test]
fn forge_create_then_cast_send_and_call_with_default_fees() {
    let node = NodeProcess::dev(&["--period", "1"]);
    let rpc = node.rpc();
    let url = node.url.clone();
    let address = forge_create(&url);
    let code = rpc.call("eth_getCode", json!([address, "latest"]));
    assert!(code.as_str().unwrap().len() > 100, "no code deployed: {code}");

    // cast send with defaults: EIP-1559, alloy's minimum 1 wei tip.
    let out = run_ok(Command::new(npm_tool("cast")).args([
        "send",
        &address,
        "store(uint256)",
        "12345",
        "--rpc-url",
        &url,
        "--mnemonic",
        DEV_MNEMONIC,
        "--json",
    ]));
    let receipt: serde_json::Value = serde_json::from_str(out.trim()).expect("cast --json receipt");
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(receipt["effectiveGasPrice"], "0x0", "no fee is charged: {receipt}");
    let tx = rpc.call("eth_getTransactionByHash", json!([receipt["transactionHash"]]));
    assert_eq!(tx["type"], "0x2");
    assert_eq!(receipt["logs"].as_array().unwrap().len(), 1);

    let stored = run_ok(Command::new(npm_tool("cast")).args([
        "call",
        &address,
        "stored()(uint256)",
        "--rpc-url",
        &url,
    ]));
    assert_eq!(stored.split_whitespace().next(), Some("12345"));
    let lz = run_ok(Command::new(npm_tool("cast")).args([
        "call",
        &address,
        "leadingZeros(uint256)(uint256)",
        "1",
        "--rpc-url",
        &url,
    ]));
    assert_eq!(lz.split_whitespace().next(), Some("255"), "CLZ(1) is 255");

    // A custom error comes back as revert data that cast decodes.
    // (cast 1.7 prints the error but may exit 0 for `call`, so the text is what is checked.)
    let (_, err) = run_any(Command::new(npm_tool("cast")).args([
        "call",
        &address,
        "store(uint256)",
        "1000000000000000000000000000000000",
        "--rpc-url",
        &url,
    ]));
    assert!(err.contains("execution reverted"), "{err}");
    let too_big = run_ok(Command::new(npm_tool("cast")).args(["sig", "TooBig(uint256,uint256)"]));
    assert!(err.contains(too_big.trim()), "revert data carries the TooBig selector: {err}");
    let direct = rpc.try_call(
        "eth_call",
        json!([{"to": address, "data": format!("0x6057361d{:064x}", 1u128 << 120)}, "latest"]),
    );
    let e = direct.expect_err("must revert");
    assert_eq!(e.code, 3, "{e:?}");
    let data = e.data.unwrap();
    assert!(data.as_str().unwrap().starts_with("0x"), "revert data: {data}");

    // eth_estimateGas finds the exact minimum: the call succeeds with it and fails with one less.
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let data = format!("0x6057361d{:064x}", 99u64);
    let est = rpc.call("eth_estimateGas", json!([{"from": from, "to": address, "data": data}]));
    let gas = u64::from_str_radix(est.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(gas > 21_000, "{gas}");
    let at = |g: u64| {
        rpc.try_call(
            "eth_call",
            json!([{"from": from, "to": address, "data": data, "gas": format!("{g:#x}")}, "latest"]),
        )
    };
    assert!(at(gas).is_ok(), "succeeds with the estimate {gas}");
    assert!(at(gas - 1).is_err(), "fails with {} gas", gas - 1);
    let e = rpc
        .try_call(
            "eth_estimateGas",
            json!([{"from": from, "to": address, "data": format!("0x6057361d{:064x}", 1u128 << 120)}]),
        )
        .expect_err("estimating a reverting call reports the revert");
    assert_eq!(e.code, 3, "{e:?}");

    // An account with zero balance transacts with cast's default fees.
    let key = format!("0x{}", "11".repeat(32));
    let poor = run_ok(Command::new(npm_tool("cast")).args(["wallet", "address", "--private-key", &key]));
    let poor = poor.trim();
    assert_eq!(rpc.call("eth_getBalance", json!([poor, "latest"])), "0x0");
    let out = run_ok(Command::new(npm_tool("cast")).args([
        "send",
        &address,
        "store(uint256)",
        "7",
        "--rpc-url",
        &url,
        "--private-key",
        &key,
        "--json",
    ]));
    let receipt: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(rpc.call("eth_getBalance", json!([poor, "latest"])), "0x0", "still zero: nothing was charged");
    rpc.wait_receipt(receipt["transactionHash"].as_str().unwrap(), Duration::from_secs(10));
}
