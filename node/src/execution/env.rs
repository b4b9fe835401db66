//! Translation of blocks and transactions into revm's environments.

use alloy_consensus::{transaction::Recovered, Transaction, TxEnvelope};
use alloy_eips::Typed2718;
use alloy_primitives::{Address, B256, U256};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::context_interface::{block::BlobExcessGasAndPrice, either::Either};
use revm::primitives::hardfork::SpecId;

/// The block fields execution needs.
#[derive(Debug, Clone, Copy)]
pub struct BlockInput {
    /// Block number.
    pub number: u64,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// COINBASE: the block's signer (the header's coinbase field only carries Clique votes).
    pub beneficiary: Address,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Clique difficulty (1 or 2).
    pub difficulty: u64,
    /// mixDigest, zero under Clique; PREVRANDAO returns it.
    pub prevrandao: B256,
}

/// revm configuration: our chain id, Osaka rules, the EIP-7825 transaction gas cap.
pub fn cfg_env(chain_id: u64) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(SpecId::OSAKA);
    cfg.chain_id = chain_id;
    cfg
}

/// revm block environment. The base fee is always zero and no blob gas is ever priced.
pub fn block_env(input: &BlockInput) -> BlockEnv {
    BlockEnv {
        number: U256::from(input.number),
        beneficiary: input.beneficiary,
        timestamp: U256::from(input.timestamp),
        gas_limit: input.gas_limit,
        basefee: 0,
        difficulty: U256::from(input.difficulty),
        prevrandao: Some(input.prevrandao),
        blob_excess_gas_and_price: Some(BlobExcessGasAndPrice { excess_blob_gas: 0, blob_gasprice: 1 }),
        ..Default::default()
    }
}

/// revm transaction environment for a recovered transaction.
///
/// Fees are zeroed here, which is the whole of "no transaction fee": whatever gas price, fee
/// cap or tip the sender signed, the transaction executes with a gas price of 0, so no sender is
/// charged and a sender with zero balance can transact.
pub fn tx_env(tx: &Recovered<TxEnvelope>) -> TxEnv {
    let inner = tx.inner();
    TxEnv {
        tx_type: inner.ty(),
        caller: tx.signer(),
        gas_limit: inner.gas_limit(),
        gas_price: 0,
        kind: inner.kind(),
        value: inner.value(),
        data: inner.input().clone(),
        nonce: inner.nonce(),
        chain_id: inner.chain_id(),
        access_list: inner.access_list().cloned().unwrap_or_default(),
        gas_priority_fee: if inner.is_dynamic_fee() { Some(0) } else { None },
        blob_hashes: Vec::new(),
        max_fee_per_blob_gas: 0,
        authorization_list: inner
            .authorization_list()
            .map(|list| list.iter().cloned().map(Either::Left).collect())
            .unwrap_or_default(),
    }
}
