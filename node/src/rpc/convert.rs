//! Consensus types → JSON-RPC response objects (alloy's RPC types, which follow the spec).

use alloy_consensus::{transaction::Recovered, ReceiptEnvelope, Transaction as _, TxEnvelope};
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
    included_transaction(tx, sealed.senders[index], &BlockPlace::of(sealed), index as u64)
}

/// Where an included transaction's block is: what its RPC objects repeat.
#[derive(Debug, Clone, Copy)]
pub struct BlockPlace {
    /// The block's hash.
    pub hash: B256,
    /// Its number.
    pub number: u64,
    /// Its timestamp.
    pub timestamp: u64,
}

impl BlockPlace {
    /// The place of `sealed`.
    pub fn of(sealed: &SealedBlock) -> Self {
        Self { hash: sealed.hash, number: sealed.number(), timestamp: sealed.header().timestamp }
    }

    /// The place of a transaction read from its own row.
    pub fn of_stored(t: &crate::storage::StoredTx) -> Self {
        Self { hash: t.block_hash, number: t.block_number, timestamp: t.block_timestamp }
    }
}

/// The RPC object of transaction `tx` from `sender`, at `index` in the block at `place`.
pub fn included_transaction(tx: TxEnvelope, sender: Address, place: &BlockPlace, index: u64) -> Transaction {
    Transaction {
        inner: Recovered::new_unchecked(tx, sender),
        block_hash: Some(place.hash),
        block_number: Some(place.number),
        transaction_index: Some(index),
        effective_gas_price: Some(0),
        block_timestamp: Some(place.timestamp),
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
    let prev_cumulative = if index == 0 { 0 } else { receipts[index - 1].cumulative_gas_used() };
    let parts = ReceiptParts {
        tx: &sealed.block.body.transactions[index],
        sender: sealed.senders[index],
        receipt: &receipts[index],
        index: index as u64,
        gas_used: receipts[index].cumulative_gas_used() - prev_cumulative,
        first_log_index: receipts[..index].iter().map(|r| r.logs().len() as u64).sum(),
    };
    receipt_from_parts(&parts, &BlockPlace::of(sealed))
}

/// What an RPC receipt needs of one transaction: itself and what the transactions before it in
/// its block add up to.
#[derive(Debug, Clone, Copy)]
pub struct ReceiptParts<'a> {
    /// The transaction.
    pub tx: &'a TxEnvelope,
    /// Its sender.
    pub sender: Address,
    /// Its consensus receipt.
    pub receipt: &'a ReceiptEnvelope,
    /// Its index in the block.
    pub index: u64,
    /// Gas it used.
    pub gas_used: u64,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
}

impl<'a> ReceiptParts<'a> {
    /// The parts of a transaction read from its own row.
    pub fn of_stored(t: &'a crate::storage::StoredTx) -> Self {
        Self {
            tx: &t.tx,
            sender: t.sender,
            receipt: &t.receipt,
            index: t.index,
            gas_used: t.gas_used,
            first_log_index: t.first_log_index,
        }
    }
}

/// The RPC receipt of one transaction in the block at `place`.
pub fn receipt_from_parts(p: &ReceiptParts<'_>, place: &BlockPlace) -> TransactionReceipt {
    let tx_hash = *p.tx.tx_hash();
    let mut log_index = p.first_log_index;
    let inner = p.receipt.clone().map_logs(|log| {
        let l = RpcLog {
            inner: log,
            block_hash: Some(place.hash),
            block_number: Some(place.number),
            block_timestamp: Some(place.timestamp),
            transaction_hash: Some(tx_hash),
            transaction_index: Some(p.index),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        l
    });
    TransactionReceipt {
        inner,
        transaction_hash: tx_hash,
        transaction_index: Some(p.index),
        block_hash: Some(place.hash),
        block_number: Some(place.number),
        gas_used: p.gas_used,
        effective_gas_price: 0,
        blob_gas_used: None,
        blob_gas_price: None,
        from: p.sender,
        to: p.tx.to(),
        contract_address: if p.tx.is_create() { Some(p.sender.create(p.tx.nonce())) } else { None },
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
