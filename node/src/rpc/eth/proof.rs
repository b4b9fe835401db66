//! `eth_getProof` (EIP-1186): Merkle proofs of an account and some of its storage slots.

use std::collections::HashMap;

use alloy_eips::BlockId;
use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use alloy_rlp::Encodable;
use alloy_rpc_types_eth::{EIP1186AccountProofResponse, EIP1186StorageProof};
use alloy_serde::JsonStorageKey;
use alloy_trie::{proof::ProofRetainer, HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};
use revm::primitives::KECCAK_EMPTY;
use serde_json::json;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use crate::state::WorldState;

/// Most storage keys one request may prove.
const MAX_KEYS: usize = 1024;

fn proof_for(leaves: &[(B256, Vec<u8>)], target: B256) -> (B256, Vec<Bytes>) {
    let key = Nibbles::unpack(target);
    let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::new(vec![key]));
    for (k, v) in leaves {
        hb.add_leaf(Nibbles::unpack(*k), v);
    }
    let root = if leaves.is_empty() { EMPTY_ROOT_HASH } else { hb.root() };
    let nodes = hb.take_proof_nodes();
    let proof = nodes.matching_nodes_sorted(&key).into_iter().map(|(_, n)| n).collect();
    (root, proof)
}

/// Proofs against `state` (which must be the state of the block asked for).
pub fn prove(
    state: &mut WorldState,
    address: Address,
    keys: &[JsonStorageKey],
) -> EIP1186AccountProofResponse {
    // Storage trie of the account.
    let storage: Vec<(B256, Vec<u8>)> = {
        let mut v: Vec<(B256, Vec<u8>)> = state
            .accounts
            .get(&address)
            .map(|e| {
                e.storage
                    .iter()
                    .map(|(k, val)| {
                        (keccak256(k.to_be_bytes::<32>()), alloy_rlp::encode_fixed_size(val).to_vec())
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|(k, _)| *k);
        v
    };
    let values: HashMap<B256, U256> = state
        .accounts
        .get(&address)
        .map(|e| e.storage.iter().map(|(k, v)| (B256::from(*k), *v)).collect())
        .unwrap_or_default();
    let storage_proof = keys
        .iter()
        .map(|k| {
            let slot = k.as_b256();
            let (_, proof) = proof_for(&storage, keccak256(slot));
            EIP1186StorageProof { key: *k, value: values.get(&slot).copied().unwrap_or_default(), proof }
        })
        .collect();
    // Account trie.
    state.state_root();
    let accounts: Vec<(B256, Vec<u8>)> = state
        .hashed
        .iter()
        .filter_map(|(h, a)| state.accounts.get(a).map(|e| (h, e)))
        .map(|(h, e)| {
            let mut buf = Vec::new();
            TrieAccount {
                nonce: e.info.nonce,
                balance: e.info.balance,
                storage_root: e.storage_root,
                code_hash: e.info.code_hash,
            }
            .encode(&mut buf);
            (*h, buf)
        })
        .collect();
    let (_, account_proof) = proof_for(&accounts, keccak256(address));
    let entry = state.accounts.get(&address);
    EIP1186AccountProofResponse {
        address,
        balance: entry.map(|e| e.info.balance).unwrap_or_default(),
        code_hash: entry.map(|e| e.info.code_hash).unwrap_or(KECCAK_EMPTY),
        nonce: entry.map(|e| e.info.nonce).unwrap_or_default(),
        storage_hash: entry.map(|e| e.storage_root).unwrap_or(EMPTY_ROOT_HASH),
        account_proof,
        storage_proof,
    }
}

/// `eth_getProof(address, keys, block)`.
pub fn get_proof(ctx: &RpcContext, p: Params) -> RpcResult {
    p.at_most(3)?;
    let address: Address = p.req(0)?;
    let keys: Vec<JsonStorageKey> = p.req(1)?;
    if keys.len() > MAX_KEYS {
        return Err(RpcError::limit_exceeded(format!("at most {MAX_KEYS} storage keys per proof")));
    }
    let block = ctx.resolve(p.opt::<BlockId>(2)?)?;
    let mut state = ctx.chain.state_at(block.number)?;
    Ok(json!(prove(&mut state, address, &keys)))
}
