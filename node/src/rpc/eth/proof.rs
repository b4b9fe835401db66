//! `eth_getProof` (EIP-1186): Merkle proofs of an account and some of its storage slots, read
//! from the stored state trie (only the paths to the proven keys are rebuilt; the state is never
//! copied). For an older block, the blocks after it are undone as an overlay from the history.

use alloy_eips::BlockId;
use alloy_primitives::{Address, B256};
use alloy_rpc_types_eth::{EIP1186AccountProofResponse, EIP1186StorageProof};
use alloy_serde::JsonStorageKey;
use alloy_trie::EMPTY_ROOT_HASH;
use revm::primitives::KECCAK_EMPTY;
use serde_json::json;

use super::super::error::{RpcError, RpcResult};
use super::super::params::Params;
use super::super::RpcContext;
use crate::state::StateError;

/// Most storage keys one request may prove.
const MAX_KEYS: usize = 1024;

/// The EIP-1186 answer for `address` and `keys` at block `number`.
fn prove_at(
    ctx: &RpcContext,
    number: u64,
    address: Address,
    keys: &[JsonStorageKey],
) -> Result<EIP1186AccountProofResponse, StateError> {
    let slots: Vec<B256> = keys.iter().map(|k| k.as_b256()).collect();
    let proof = ctx.chain.reads().prove(number, &address, &slots)?;
    let account = proof.account;
    let storage_proof = keys
        .iter()
        .zip(proof.storage)
        .map(|(key, (value, proof))| EIP1186StorageProof { key: *key, value, proof })
        .collect();
    Ok(EIP1186AccountProofResponse {
        address,
        balance: account.map(|a| a.balance).unwrap_or_default(),
        code_hash: account.map(|a| a.code_hash).unwrap_or(KECCAK_EMPTY),
        nonce: account.map(|a| a.nonce).unwrap_or_default(),
        storage_hash: account.map(|a| a.storage_root).unwrap_or(EMPTY_ROOT_HASH),
        account_proof: proof.account_proof,
        storage_proof,
    })
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
    let head = ctx.chain.snapshot().head.header.number;
    let window = ctx.config.proof_window;
    if head.saturating_sub(block.number) > window {
        return Err(RpcError::limit_exceeded(format!(
            "block {} is {} blocks behind the head; proofs are served for the last {window} (--rpc-proof-window)",
            block.number,
            head - block.number
        )));
    }
    Ok(json!(prove_at(ctx, block.number, address, &keys)?))
}
