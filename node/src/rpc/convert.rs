//! Consensus types → JSON-RPC response objects (alloy's RPC types, which follow the spec).

use alloy_consensus::{transaction::Recovered, ReceiptEnvelope, Transaction as _};
use alloy_primitives::{Address, B256, U256};
use alloy_rlp::Encodable;
use alloy_rpc_types_eth::{
    Block as RpcBlock, BlockTransactions, Header as RpcHeader, Log as RpcLog, Transaction, TransactionReceipt,
};

use crate::primitives::SealedBlock;

/// The RPC header of a block (as in `newHeads` notifications).
pub fn header(sealed: &SealedBlock, td: U256) -> RpcHeader {
    RpcHeader {
        hash: sealed.hash,
        inner: sealed.block.header.clone(),
        total_difficulty: Some(td),
        size: Some(U256::from(sealed.block.length())),
    }
}

/// Every log of a block with its position, in canonical order.
pub fn block_logs(sealed: &SealedBlock, receipts: &[ReceiptEnvelope]) -> Vec<crate::storage::StoredLog> {
    let mut out = Vec::new();
    let mut log_index = 0u64;
    for (tx_index, (r, tx)) in receipts.iter().zip(&sealed.block.body.transactions).enumerate() {
        for log in r.logs() {
            out.push(crate::storage::StoredLog {
                log: log.clone(),
                block_number: sealed.number(),
                block_hash: sealed.hash,
                block_timestamp: sealed.header().timestamp,
                tx_hash: *tx.tx_hash(),
                tx_index: tx_index as u64,
                log_index,
            });
            log_index += 1;
        }
    }
    out
}

/// An RPC block; `full` selects transaction objects over hashes.
pub fn block(sealed: &SealedBlock, td: U256, full: bool) -> RpcBlock {
    let header = header(sealed, td);
    let transactions = if full {
        BlockTransactions::Full(
            (0..sealed.block.body.transactions.len()).map(|i| transaction(sealed, i)).collect(),
        )
    } else {
        BlockTransactions::Hashes(sealed.block.body.transactions.iter().map(|t| *t.tx_hash()).collect())
    };
    RpcBlock { header, uncles: vec![], transactions, withdrawals: Some(Default::default()) }
}

/// The RPC form of transaction `index` of a block.
pub fn transaction(sealed: &SealedBlock, index: usize) -> Transaction {
    let tx = sealed.block.body.transactions[index].clone();
    Transaction {
        inner: Recovered::new_unchecked(tx, sealed.senders[index]),
        block_hash: Some(sealed.hash),
        block_number: Some(sealed.number()),
        transaction_index: Some(index as u64),
        effective_gas_price: Some(0),
        block_timestamp: Some(sealed.header().timestamp),
    }
}

/// A waiting (pool) transaction. The execution-apis schema requires `gasPrice` on EIP-1559
/// (and EIP-7702) transactions and says that before inclusion it equals `maxFeePerGas`, as
/// geth answers; legacy and EIP-2930 transactions carry their own `gasPrice`.
pub fn pending_transaction(tx: &crate::primitives::RecoveredTx) -> Transaction {
    Transaction {
        inner: tx.clone(),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: Some(tx.max_fee_per_gas()),
        block_timestamp: None,
    }
}

/// The RPC receipt of transaction `index`, given all receipts of its block.
pub fn receipt(sealed: &SealedBlock, receipts: &[ReceiptEnvelope], index: usize) -> TransactionReceipt {
    let tx = &sealed.block.body.transactions[index];
    let from: Address = sealed.senders[index];
    let prev_cumulative = if index == 0 { 0 } else { receipts[index - 1].cumulative_gas_used() };
    let r = &receipts[index];
    let first_log_index: usize = receipts[..index].iter().map(|r| r.logs().len()).sum();
    let mut log_index = first_log_index as u64;
    let block_hash = sealed.hash;
    let block_number = sealed.number();
    let tx_hash = *tx.tx_hash();
    let timestamp = sealed.header().timestamp;
    let inner = r.clone().map_logs(|log| {
        let l = RpcLog {
            inner: log,
            block_hash: Some(block_hash),
            block_number: Some(block_number),
            block_timestamp: Some(timestamp),
            transaction_hash: Some(tx_hash),
            transaction_index: Some(index as u64),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        l
    });
    TransactionReceipt {
        inner,
        transaction_hash: tx_hash,
        transaction_index: Some(index as u64),
        block_hash: Some(block_hash),
        block_number: Some(block_number),
        gas_used: r.cumulative_gas_used() - prev_cumulative,
        effective_gas_price: 0,
        blob_gas_used: None,
        blob_gas_price: None,
        from,
        to: tx.to(),
        contract_address: if tx.is_create() { Some(from.create(tx.nonce())) } else { None },
    }
}

/// An RPC log from a stored one.
pub fn log(l: &crate::storage::StoredLog, removed: bool) -> RpcLog {
    RpcLog {
        inner: l.log.clone(),
        block_hash: Some(l.block_hash),
        block_number: Some(l.block_number),
        block_timestamp: Some(l.block_timestamp),
        transaction_hash: Some(l.tx_hash),
        transaction_index: Some(l.tx_index),
        log_index: Some(l.log_index),
        removed,
    }
}

/// Hash of a transaction (shorthand).
pub fn tx_hash(tx: &alloy_consensus::TxEnvelope) -> B256 {
    *tx.tx_hash()
}
