//! Clique proof of authority (EIP-225), written for N signers.
//!
//! - [`seal`]: the seal hash, signing and signer recovery;
//! - [`snapshot`]: the authorised signer set, recent signers and the vote tally;
//! - [`verify`]: header rules checked on every block, sealed here or imported;
//! - [`header_chain`]: a peer's header chain verified on a copy of the snapshot (header-first sync);
//! - [`proposals`]: the votes this node's signer casts (`clique_propose`);
//! - [`confirmation`]: the confirmation depths behind the `safe` and `finalized` block tags.

pub mod confirmation;
pub mod fork_choice;
pub mod header_chain;
pub mod history;
pub mod proposals;
pub mod seal;
pub mod snapshot;
pub mod verify;

pub use header_chain::HeaderChain;
pub use history::{snapshot_after, SnapshotLookupError};
pub use proposals::Proposals;
pub use seal::{recover_sealer, seal_hash, sign_header};
pub use snapshot::{Snapshot, Tally, Vote};
pub use verify::{prepare_header, verify_gas, verify_header, CliqueError, Proposal, SealIntent};

use alloy_primitives::{B64, U256};

/// Nonce that votes to add the coinbase as a signer.
pub const NONCE_AUTH: B64 = B64::new([0xff; 8]);
/// Nonce that votes to remove the coinbase (or casts no vote when the coinbase is zero).
pub const NONCE_DROP: B64 = B64::ZERO;
/// Difficulty of a block sealed by the in-turn signer.
pub const DIFF_IN_TURN: U256 = U256::from_limbs([2, 0, 0, 0]);
/// Difficulty of a block sealed out of turn.
pub const DIFF_NO_TURN: U256 = U256::from_limbs([1, 0, 0, 0]);
