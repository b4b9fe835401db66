//! Receipts in their consensus (EIP-2718) form.

use alloy_consensus::{Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType};
use alloy_primitives::{Bloom, Log};

/// Builds the typed receipt of one transaction.
pub fn build_receipt(
    tx_type: TxType,
    success: bool,
    cumulative_gas_used: u64,
    logs: Vec<Log>,
) -> ReceiptEnvelope {
    let receipt = Receipt { status: Eip658Value::Eip658(success), cumulative_gas_used, logs };
    let with_bloom = ReceiptWithBloom::from(receipt);
    match tx_type {
        TxType::Legacy => ReceiptEnvelope::Legacy(with_bloom),
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(with_bloom),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(with_bloom),
        TxType::Eip4844 => ReceiptEnvelope::Eip4844(with_bloom),
        TxType::Eip7702 => ReceiptEnvelope::Eip7702(with_bloom),
    }
}

/// The block's logs bloom: the union of its receipts' blooms.
pub fn receipts_bloom(receipts: &[ReceiptEnvelope]) -> Bloom {
    let mut bloom = Bloom::ZERO;
    for r in receipts {
        bloom.accrue_bloom(r.logs_bloom());
    }
    bloom
}
