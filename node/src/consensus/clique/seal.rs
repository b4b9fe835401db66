//! The Clique seal: a secp256k1 signature over the header without its last 65 bytes of extraData.

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, B256, U256};

use crate::chain::EXTRA_SEAL;
use crate::crypto::{recover_signer_unchecked, SigningKey, SECP256K1N_HALF};

use super::verify::CliqueError;

/// keccak256 of the RLP of `header` with the seal cut off `extraData`.
///
/// Every header field is covered, including the post-London ones this chain carries.
pub fn seal_hash(header: &Header) -> Result<B256, CliqueError> {
    if header.extra_data.len() < EXTRA_SEAL {
        return Err(CliqueError::MissingSeal);
    }
    let mut unsealed = header.clone();
    unsealed.extra_data = Bytes::copy_from_slice(&header.extra_data[..header.extra_data.len() - EXTRA_SEAL]);
    Ok(unsealed.hash_slow())
}

/// The address that sealed `header`.
///
/// The seal's `s` must be in the lower half of the curve order (EIP-2's rule for transactions,
/// applied to seals): a signature (r, s) has a twin (r, n − s) that recovers to the same signer,
/// so without this rule anyone could turn a valid block into a second valid block with another
/// hash, without a key.
pub fn recover_sealer(header: &Header) -> Result<Address, CliqueError> {
    let hash = seal_hash(header)?;
    let extra = &header.extra_data;
    let mut sig = [0u8; 65];
    sig.copy_from_slice(&extra[extra.len() - EXTRA_SEAL..]);
    // EIP-225 seals carry the recovery id as 0 or 1, nothing else.
    if sig[64] > 1 {
        return Err(CliqueError::InvalidSeal);
    }
    if U256::from_be_slice(&sig[32..64]) > SECP256K1N_HALF {
        return Err(CliqueError::HighSSeal);
    }
    recover_signer_unchecked(&sig, &hash).map_err(|_| CliqueError::InvalidSeal)
}

/// Seals `header` in place with `key`; `extraData` must already end with 65 placeholder bytes.
pub fn sign_header(header: &mut Header, key: &SigningKey) -> Result<(), CliqueError> {
    let hash = seal_hash(header)?;
    // r ‖ s ‖ v with v = y-parity (0 or 1), as geth writes Clique seals.
    let sig = key.sign_hash(&hash).as_rsy();
    let mut extra = header.extra_data.to_vec();
    let n = extra.len();
    extra[n - EXTRA_SEAL..].copy_from_slice(&sig);
    header.extra_data = extra.into();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{b256, B64, U256};

    /// geth's `TestSealHash`: an all-zero header with 97 zero bytes of extraData and base fee 0.
    #[test]
    fn seal_hash_matches_geth_vector() {
        let header = Header {
            parent_hash: B256::ZERO,
            ommers_hash: B256::ZERO,
            beneficiary: Address::ZERO,
            state_root: B256::ZERO,
            transactions_root: B256::ZERO,
            receipts_root: B256::ZERO,
            logs_bloom: Default::default(),
            difficulty: U256::ZERO,
            number: 0,
            gas_limit: 0,
            gas_used: 0,
            timestamp: 0,
            extra_data: vec![0u8; 97].into(),
            mix_hash: B256::ZERO,
            nonce: B64::ZERO,
            base_fee_per_gas: Some(0),
            withdrawals_root: None,
            blob_gas_used: None,
            excess_blob_gas: None,
            parent_beacon_block_root: None,
            requests_hash: None,
            ..Default::default()
        };
        assert_eq!(
            seal_hash(&header).unwrap(),
            b256!("bd3d1fa43fbc4c5bfcc91b179ec92e2861df3654de60468beb908ff805359e8f")
        );
    }

    #[test]
    fn sign_and_recover_round_trip() {
        let key = SigningKey::from_bytes(&B256::repeat_byte(7)).unwrap();
        let mut header = Header { number: 5, extra_data: vec![0u8; 97].into(), ..Default::default() };
        sign_header(&mut header, &key).unwrap();
        assert!(header.extra_data[96] <= 1, "v is the y-parity");
        assert_eq!(recover_sealer(&header).unwrap(), key.address());
        let mut bad = header.clone();
        let mut extra = bad.extra_data.to_vec();
        extra[96] += 27;
        bad.extra_data = extra.into();
        assert!(matches!(recover_sealer(&bad), Err(CliqueError::InvalidSeal)));
        header.timestamp += 1;
        assert_ne!(recover_sealer(&header).unwrap(), key.address());
        header.extra_data = vec![0u8; 10].into();
        assert!(matches!(recover_sealer(&header), Err(CliqueError::MissingSeal)));
    }

    /// The twin (r, n − s, 1 − v) of a seal recovers to the same signer, and is refused.
    #[test]
    fn high_s_twin_of_a_seal_is_refused() {
        let key = SigningKey::from_bytes(&B256::repeat_byte(9)).unwrap();
        let mut header = Header { number: 3, extra_data: vec![0u8; 97].into(), ..Default::default() };
        sign_header(&mut header, &key).unwrap();
        let seal: [u8; 65] = header.extra_data[32..].try_into().unwrap();
        let order = SECP256K1N_HALF * U256::from(2) + U256::from(1);
        let mut twin = seal;
        twin[32..64].copy_from_slice(&(order - U256::from_be_slice(&seal[32..64])).to_be_bytes::<32>());
        twin[64] = 1 - seal[64];
        assert!(U256::from_be_slice(&twin[32..64]) > SECP256K1N_HALF);
        // Without the rule the twin is a second valid seal by the same key.
        let hash = seal_hash(&header).unwrap();
        assert_eq!(recover_signer_unchecked(&twin, &hash).unwrap(), key.address());
        let mut extra = header.extra_data.to_vec();
        extra[32..].copy_from_slice(&twin);
        let mut malleated = header.clone();
        malleated.extra_data = extra.into();
        assert_ne!(malleated.hash_slow(), header.hash_slow());
        let err = recover_sealer(&malleated).unwrap_err();
        assert_eq!(err, CliqueError::HighSSeal);
        assert!(err.to_string().contains("low-s"), "{err}");
        assert_eq!(recover_sealer(&header).unwrap(), key.address());
    }
}
