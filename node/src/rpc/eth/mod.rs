//! The `eth_` namespace, one file per concern:
//! [`block`] blocks and counts, [`state`] balances/code/storage/nonces, [`call`] `eth_call`,
//! [`estimate`] gas estimation, [`access_list`] `eth_createAccessList`, [`proof`]
//! `eth_getProof`, [`fee`] fee methods (all zero), [`transaction`] sending and looking up
//! transactions and receipts, [`logs`] `eth_getLogs`, [`signer`] dev accounts and
//! `eth_sendTransaction`, [`sign`] `eth_sign`, `personal_sign` and `eth_signTypedData_v4`.

pub mod access_list;
pub mod block;
pub mod call;
pub mod estimate;
pub mod fee;
pub mod logs;
pub mod proof;
pub mod sign;
pub mod signer;
pub mod state;
pub mod transaction;

use serde_json::{json, Value};

use super::error::{RpcError, RpcResult};
use super::params::Params;
use super::RpcContext;

/// Hex quantity.
pub(crate) fn q(n: u64) -> Value {
    Value::String(format!("{n:#x}"))
}

/// Handles `eth_*` methods.
pub fn call(ctx: &RpcContext, method: &str, p: Params) -> RpcResult {
    match method {
        "eth_chainId" => {
            p.at_most(0)?;
            Ok(q(ctx.chain.spec().chain_id))
        }
        "eth_blockNumber" => {
            p.at_most(0)?;
            Ok(q(ctx.chain.head_number()))
        }
        "eth_syncing" => {
            p.at_most(0)?;
            // While a sync that started well behind the best peer runs (network/sync.rs), its
            // progress; `false` otherwise, and always on a node without a peer network.
            let progress = ctx.network.as_ref().and_then(|n| n.sync.get());
            Ok(match progress {
                Some((starting, highest)) => {
                    let current = ctx.chain.head_number();
                    json!({
                        "startingBlock": q(starting),
                        "currentBlock": q(current),
                        "highestBlock": q(highest.max(current)),
                    })
                }
                None => json!(false),
            })
        }
        "eth_coinbase" => {
            p.at_most(0)?;
            Ok(json!(ctx.signer.unwrap_or_default()))
        }
        "eth_mining" => {
            p.at_most(0)?;
            Ok(json!(ctx.signer.is_some()))
        }
        "eth_hashrate" => {
            p.at_most(0)?;
            Ok(q(0))
        }
        "eth_gasPrice" | "eth_maxPriorityFeePerGas" | "eth_blobBaseFee" => fee::zero(p),
        "eth_feeHistory" => fee::fee_history(ctx, p),
        "eth_getBalance" => state::balance(ctx, p),
        "eth_getCode" => state::code(ctx, p),
        "eth_getStorageAt" => state::storage_at(ctx, p),
        "eth_getTransactionCount" => state::transaction_count(ctx, p),
        "eth_sendRawTransaction" => transaction::send_raw(ctx, p),
        "eth_getTransactionByHash" => transaction::by_hash(ctx, p),
        "eth_getTransactionReceipt" => transaction::receipt(ctx, p),
        "eth_getBlockByNumber" | "eth_getBlockByHash" => block::get_block(ctx, method, p),
        "eth_getBlockReceipts" => block::block_receipts(ctx, p),
        "eth_getBlockTransactionCountByNumber" | "eth_getBlockTransactionCountByHash" => {
            block::tx_count(ctx, p)
        }
        "eth_getUncleCountByBlockNumber" | "eth_getUncleCountByBlockHash" => block::uncle_count(ctx, p),
        "eth_getLogs" => logs::get_logs(ctx, p),
        "eth_getTransactionByBlockHashAndIndex" | "eth_getTransactionByBlockNumberAndIndex" => {
            block::tx_by_index(ctx, method, p)
        }
        "eth_getUncleByBlockHashAndIndex" | "eth_getUncleByBlockNumberAndIndex" => block::uncle(ctx, p),
        "eth_getProof" => proof::get_proof(ctx, p),
        "eth_sign" => sign::personal(ctx, method, p),
        "eth_signTypedData_v4" | "eth_signTypedData" => sign::typed_data(ctx, p),
        "eth_accounts" => signer::accounts(ctx, p),
        "eth_sendTransaction" => signer::send_transaction(ctx, p),
        _ => Err(RpcError::method_not_found(method)),
    }
}
