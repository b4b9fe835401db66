//! Block and transaction types shared by every component.

use alloy_consensus::{transaction::Recovered, Header, TxEnvelope};
use alloy_primitives::{Address, B256, U256};

/// A block as it travels the chain: header, transactions and (since Shanghai) withdrawals.
pub type Block = alloy_consensus::Block<TxEnvelope>;

/// A transaction with its recovered sender.
pub type RecoveredTx = Recovered<TxEnvelope>;

/// A block with its hash and the senders of its transactions.
#[derive(Debug, Clone)]
pub struct SealedBlock {
    /// keccak256 of the RLP header.
    pub hash: B256,
    /// The block.
    pub block: Block,
    /// Sender of each transaction, in order.
    pub senders: Vec<Address>,
}

impl SealedBlock {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.block.header
    }

    /// Block number.
    pub fn number(&self) -> u64 {
        self.block.header.number
    }

    /// The transactions with their senders.
    pub fn recovered_txs(&self) -> impl Iterator<Item = RecoveredTx> + '_ {
        self.block
            .body
            .transactions
            .iter()
            .zip(&self.senders)
            .map(|(tx, sender)| Recovered::new_unchecked(tx.clone(), *sender))
    }
}

/// Where a block sits in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    /// Block hash.
    pub hash: B256,
    /// Block number.
    pub number: u64,
    /// Total difficulty up to and including this block.
    pub total_difficulty: U256,
}
