//! Building and signing EIP-1559 transactions.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{hex, Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

use super::LoadgenError;

/// Fee fields shared by every transaction of a run.
#[derive(Debug, Clone, Copy)]
pub struct Fees {
    /// `maxFeePerGas` in wei.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas` in wei.
    pub max_priority_fee_per_gas: u128,
}

/// What a transaction does, apart from its sender and nonce.
#[derive(Debug, Clone)]
pub struct Call {
    /// Recipient, or `None` to create a contract.
    pub to: Option<Address>,
    /// Value in wei.
    pub value: U256,
    /// Calldata or init code.
    pub input: Bytes,
    /// Gas limit.
    pub gas_limit: u64,
}

/// A signed transaction ready to be sent with `eth_sendRawTransaction`.
#[derive(Debug, Clone)]
pub struct SignedTx {
    /// Index of the sender in the run's sender list.
    pub sender: usize,
    /// Nonce of the transaction.
    pub nonce: u64,
    /// Transaction hash.
    pub hash: B256,
    /// EIP-2718 encoding as a `0x`-prefixed hex string.
    pub raw_hex: String,
}

/// Signs one EIP-1559 transaction; returns its hash and `0x` hex encoding.
pub fn sign(
    signer: &PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
    fees: Fees,
    call: &Call,
) -> Result<(B256, String), LoadgenError> {
    let tx = TxEip1559 {
        chain_id,
        nonce,
        gas_limit: call.gas_limit,
        max_fee_per_gas: fees.max_fee_per_gas,
        max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        to: call.to.map_or(TxKind::Create, TxKind::Call),
        value: call.value,
        access_list: Default::default(),
        input: call.input.clone(),
    };
    let sig =
        signer.sign_hash_sync(&tx.signature_hash()).map_err(|e| LoadgenError::Signing(e.to_string()))?;
    let signed = tx.into_signed(sig);
    let hash = *signed.hash();
    let envelope = TxEnvelope::from(signed);
    Ok((hash, hex::encode_prefixed(envelope.encoded_2718())))
}

/// One sender's share of a run: `count` transactions from `first_nonce` on,
/// built by `make_call(sender_index, nonce)`.
#[derive(Debug, Clone, Copy)]
pub struct SenderPlan {
    /// Nonce of the sender's first transaction.
    pub first_nonce: u64,
    /// Number of transactions of this sender.
    pub count: u64,
}

/// Signs all transactions of all senders, using every available core.
///
/// The result holds, per sender, its transactions in nonce order.
pub fn sign_all<F>(
    signers: &[PrivateKeySigner],
    plans: &[SenderPlan],
    chain_id: u64,
    fees: Fees,
    make_call: F,
) -> Result<Vec<Vec<SignedTx>>, LoadgenError>
where
    F: Fn(usize, u64) -> Call + Sync,
{
    if signers.len() != plans.len() {
        return Err(LoadgenError::Config("one plan per sender is required".to_owned()));
    }
    let threads =
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(signers.len().max(1));
    let chunk = signers.len().div_ceil(threads).max(1);
    let make_call = &make_call;
    let results: Vec<Result<Vec<Vec<SignedTx>>, LoadgenError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = signers
            .chunks(chunk)
            .zip(plans.chunks(chunk))
            .enumerate()
            .map(|(c, (sigs, plans))| {
                scope.spawn(move || {
                    sigs.iter()
                        .zip(plans)
                        .enumerate()
                        .map(|(k, (signer, plan))| {
                            let sender = c * chunk + k;
                            (plan.first_nonce..plan.first_nonce + plan.count)
                                .map(|nonce| {
                                    let call = make_call(sender, nonce);
                                    let (hash, raw_hex) = sign(signer, chain_id, nonce, fees, &call)?;
                                    Ok(SignedTx { sender, nonce, hash, raw_hex })
                                })
                                .collect::<Result<Vec<_>, LoadgenError>>()
                        })
                        .collect::<Result<Vec<_>, LoadgenError>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(LoadgenError::Signing("signing thread panicked".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(signers.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::transaction::SignerRecoverable;
    use alloy_eips::eip2718::Decodable2718;

    #[test]
    fn signed_tx_roundtrips() {
        let signer = PrivateKeySigner::random();
        let call = Call {
            to: Some(Address::repeat_byte(0x11)),
            value: U256::from(1u64),
            input: Bytes::new(),
            gas_limit: 21_000,
        };
        let fees = Fees { max_fee_per_gas: 0, max_priority_fee_per_gas: 0 };
        let (hash, raw) = sign(&signer, 1337, 5, fees, &call).expect("sign");
        let bytes = hex::decode(raw).expect("hex");
        assert_eq!(bytes[0], 2, "type 2 transaction");
        let env = TxEnvelope::decode_2718(&mut bytes.as_slice()).expect("decode");
        assert_eq!(*env.tx_hash(), hash);
        assert_eq!(env.recover_signer().expect("recover"), signer.address());
    }
}
