//! Block and transaction types shared by every component.

use alloy_consensus::{transaction::Recovered, Header, TxEnvelope};
use alloy_primitives::{Address, B256, U256};

/// A header with the fields every block of this chain fixes (a zero base fee; no withdrawals,
/// blobs or requests; a zero beacon root: Prague's header shape at zero fee, which
/// `consensus::clique::verify` checks) and every other field at its default, for builders to fill.
pub fn fixed_fields_header() -> Header {
    Header {
        base_fee_per_gas: Some(0),
        withdrawals_root: Some(alloy_consensus::EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(alloy_eips::eip7685::EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}

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
