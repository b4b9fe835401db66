//! The verdict a node gives a gossiped transaction batch, on the real chain code (in-process):
//! a batch of new valid transactions is forwarded, a batch of known ones is ignored without a
//! second signature check, and a batch with one invalid transaction is rejected (its sender
//! punished) while its valid transactions are pooled and handed back for this node to publish.

use std::sync::Arc;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, Bytes, TxKind};
use libp2p::gossipsub::MessageAcceptance;
use p2pe_node::blockchain::{Blockchain, ChainOptions};
use p2pe_node::chain::{build_genesis, ChainSpec, GenesisParams};
use p2pe_node::network::peers::Offence;
use p2pe_node::network::txgossip::{accept_batch, decode_batch, encode_batch};
use p2pe_node::storage::Store;
use p2pe_node::txpool::{PoolConfig, TxPool};
use p2pe_tests::harness::{dev_key, sign_raw};

fn transfer(from: u32, nonce: u64, chain_id: u64) -> Bytes {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(0x42)),
        ..Default::default()
    };
    alloy_primitives::hex::decode(sign_raw(&dev_key(from), tx)).unwrap().into()
}

#[test]
fn batches_are_forwarded_ignored_or_rejected_and_valid_transactions_are_never_dropped() {
    let params = GenesisParams { chain_id: 77, signers: vec![dev_key(9).address()], ..Default::default() };
    let json = serde_json::to_string(&build_genesis(&params)).unwrap();
    let spec = ChainSpec::from_json(&json).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), None).unwrap();
    store.init_genesis(&spec, &json).unwrap();
    let opts = ChainOptions { read_connections: 1, ..Default::default() };
    let chain = Blockchain::open(spec, store, Arc::new(TxPool::new(PoolConfig::default())), &opts).unwrap();

    // New, valid: forwarded, nothing to republish.
    let batch = vec![transfer(0, 0, 77), transfer(1, 0, 77)];
    let wire = encode_batch(&batch);
    assert_eq!(decode_batch(&wire).unwrap(), batch);
    let v = accept_batch(&chain, &batch);
    assert_eq!(v.acceptance, MessageAcceptance::Accept);
    assert!(v.offence.is_none() && v.republish.is_empty());
    assert_eq!(chain.pool().len(), 2);

    // The same again: ignored.
    let v = accept_batch(&chain, &batch);
    assert_eq!(v.acceptance, MessageAcceptance::Ignore);
    assert!(v.offence.is_none() && v.republish.is_empty());

    // One transaction for another chain among two new valid ones: rejected and punished, the
    // valid ones pooled and handed back to be published by this node.
    let good = [transfer(2, 0, 77), transfer(0, 1, 77)];
    let mixed = vec![good[0].clone(), transfer(3, 0, 5), good[1].clone()];
    let v = accept_batch(&chain, &mixed);
    assert_eq!(v.acceptance, MessageAcceptance::Reject);
    assert!(matches!(v.offence, Some(Offence::InvalidTx)));
    let mut expected: Vec<_> = good.iter().map(alloy_primitives::keccak256).collect();
    let mut got = v.republish.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(chain.pool().len(), 4);
    assert!(expected.iter().all(|h| chain.pool().contains(h)));

    // Garbage bytes as a transaction: rejected, nothing pooled.
    let v = accept_batch(&chain, &[Bytes::from_static(&[0x02, 0xc0])]);
    assert_eq!(v.acceptance, MessageAcceptance::Reject);
    assert!(v.republish.is_empty());
    assert_eq!(chain.pool().len(), 4);
}
