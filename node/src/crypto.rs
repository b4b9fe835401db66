//! secp256k1 signing and sender recovery (libsecp256k1 through the `secp256k1` crate).

use alloy_primitives::{keccak256, Address, Signature, B256, U256};
use secp256k1::{
    ecdsa::{RecoverableSignature, RecoveryId},
    Message, SecretKey, SECP256K1,
};

/// Half the secp256k1 group order: EIP-2 requires `s` at or below it (transactions and, on this
/// chain, Clique seals).
pub const SECP256K1N_HALF: U256 = U256::from_be_bytes([
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x5D,
    0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

/// Why a signature did not yield a signer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// `s` is in the upper half of the curve order (EIP-2).
    #[error("signature s value is too high (EIP-2)")]
    HighS,
    /// The signature does not recover to a public key.
    #[error("invalid signature")]
    Invalid,
}

/// Recovers the address that signed `hash`. Enforces low `s`.
pub fn recover_signer(signature: &Signature, hash: &B256) -> Result<Address, RecoveryError> {
    if signature.s() > SECP256K1N_HALF {
        return Err(RecoveryError::HighS);
    }
    recover_signer_unchecked(&signature.as_bytes(), hash)
}

/// Recovers the signer of a 65-byte `r ‖ s ‖ v` signature, `v` ∈ {0, 1} (or 27/28).
pub fn recover_signer_unchecked(sig: &[u8; 65], hash: &B256) -> Result<Address, RecoveryError> {
    let v = match sig[64] {
        v @ 0..=1 => v,
        v @ 27..=28 => v - 27,
        _ => return Err(RecoveryError::Invalid),
    };
    let recid = RecoveryId::try_from(v as i32).map_err(|_| RecoveryError::Invalid)?;
    let rsig = RecoverableSignature::from_compact(&sig[..64], recid).map_err(|_| RecoveryError::Invalid)?;
    let pk =
        SECP256K1.recover_ecdsa(Message::from_digest(hash.0), &rsig).map_err(|_| RecoveryError::Invalid)?;
    let hash = keccak256(&pk.serialize_uncompressed()[1..]);
    Ok(Address::from_slice(&hash[12..]))
}

/// A secret key held in memory for signing. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(SecretKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.address())
    }
}

impl SigningKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: &B256) -> Result<Self, RecoveryError> {
        SecretKey::from_byte_array(bytes.0).map(Self).map_err(|_| RecoveryError::Invalid)
    }

    /// The key's Ethereum address.
    pub fn address(&self) -> Address {
        let pk = self.0.public_key(SECP256K1);
        let hash = keccak256(&pk.serialize_uncompressed()[1..]);
        Address::from_slice(&hash[12..])
    }

    /// Signs a 32-byte digest, returning an Ethereum signature with y-parity.
    pub fn sign_hash(&self, hash: &B256) -> Signature {
        let sig = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), &self.0);
        let (recid, bytes) = sig.serialize_compact();
        Signature::new(
            U256::from_be_slice(&bytes[..32]),
            U256::from_be_slice(&bytes[32..]),
            i32::from(recid) != 0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_recover() {
        let key = SigningKey::from_bytes(&B256::repeat_byte(0x42)).unwrap();
        let hash = keccak256(b"p2p-energy");
        let sig = key.sign_hash(&hash);
        assert_eq!(recover_signer(&sig, &hash).unwrap(), key.address());
        assert_ne!(recover_signer(&sig, &keccak256(b"other")).unwrap(), key.address());
        let mut bytes = sig.as_bytes();
        bytes[64] = 9;
        assert_eq!(recover_signer_unchecked(&bytes, &hash), Err(RecoveryError::Invalid));
    }
}
