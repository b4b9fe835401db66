//! The undo record of a block, read from any state before the block is applied.

use std::collections::{BTreeMap, HashSet};

use alloy_primitives::{Address, U256};

use super::{StateChanges, StateError, StateReader, StateUndo};

/// What applying `changes` to `state` overwrites: the previous value of every account and slot
/// the block changes, in the form [`super::WorldState::apply`] returns it (so stored history
/// and reverts work the same whichever state the block ran on).
///
/// `slots_of(address)` lists an account's non-zero slots; it is called only for accounts the
/// block wipes (self-destruct, re-creation) or deletes, whose every slot must be remembered.
pub fn undo_for<R, F>(state: &R, slots_of: F, changes: &StateChanges) -> Result<StateUndo, StateError>
where
    R: StateReader + ?Sized,
    F: Fn(&Address) -> Result<Vec<(U256, U256)>, StateError>,
{
    let mut undo = StateUndo::default();
    let wiped: HashSet<&Address> = changes.wiped.iter().collect();
    for address in &changes.wiped {
        for (slot, value) in slots_of(address)? {
            undo.storage.push((*address, slot, value));
        }
    }
    for (address, slots) in &changes.storage {
        let was_wiped = wiped.contains(address);
        for (slot, value) in slots {
            let old = if was_wiped { U256::ZERO } else { state.storage(address, slot)? };
            if old != *value {
                undo.storage.push((*address, *slot, old));
            }
        }
    }
    for (address, info) in &changes.accounts {
        let old = state.account(address)?;
        if info.is_none() {
            // The account goes with the storage it has after this block's writes.
            let mut left: BTreeMap<U256, U256> = if wiped.contains(address) {
                BTreeMap::new()
            } else {
                slots_of(address)?.into_iter().collect()
            };
            for (slot, value) in changes.storage.get(address).into_iter().flatten() {
                if value.is_zero() {
                    left.remove(slot);
                } else {
                    left.insert(*slot, *value);
                }
            }
            undo.storage.extend(left.into_iter().map(|(slot, value)| (*address, slot, value)));
        }
        if old != *info {
            undo.accounts.push((*address, old));
        }
    }
    Ok(undo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AccountInfo, WorldState};
    use alloy_primitives::{Bytes, B256};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use revm::primitives::KECCAK_EMPTY;

    fn slots_of(ws: &WorldState) -> impl Fn(&Address) -> Result<Vec<(U256, U256)>, StateError> + '_ {
        |a| {
            Ok(ws
                .accounts
                .get(a)
                .map(|e| e.storage.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default())
        }
    }

    /// Undo records as sets: the order of a deleted account's slots is not meaningful, the
    /// first record of a slot is (it is the value before the block).
    type Normalised = (Vec<(Address, Option<AccountInfo>)>, Vec<(Address, U256, U256)>);

    fn normalised(undo: &StateUndo) -> Normalised {
        let mut seen = HashSet::new();
        let mut storage: Vec<_> =
            undo.storage.iter().filter(|(a, s, _)| seen.insert((*a, *s))).copied().collect();
        storage.sort();
        (undo.accounts.clone(), storage)
    }

    fn random_changes(rng: &mut StdRng, addresses: &[Address]) -> StateChanges {
        let mut changes = StateChanges::default();
        for _ in 0..rng.gen_range(1..12) {
            let a = addresses[rng.gen_range(0..addresses.len())];
            match rng.gen_range(0..10) {
                0 => {
                    changes.accounts.insert(a, None);
                }
                1 => {
                    changes.wiped.push(a);
                    changes.accounts.insert(
                        a,
                        Some(AccountInfo { nonce: 1, code_hash: KECCAK_EMPTY, ..Default::default() }),
                    );
                }
                _ => {
                    let info = AccountInfo {
                        nonce: rng.gen_range(0..3),
                        balance: U256::from(rng.gen_range(0..3u64)),
                        code_hash: KECCAK_EMPTY,
                    };
                    changes.accounts.insert(a, Some(info));
                }
            }
            let slots = changes.storage.entry(a).or_default();
            for _ in 0..rng.gen_range(0..6) {
                slots.insert(U256::from(rng.gen_range(0..8u64)), U256::from(rng.gen_range(0..3u64)));
            }
        }
        changes.wiped.sort();
        changes.wiped.dedup();
        changes.codes.insert(B256::repeat_byte(1), Bytes::from_static(&[0x00]));
        changes
    }

    /// Differential: on random blocks (creations, deletions, wipes, slot writes and deletions),
    /// the undo read from the state before the block equals the one the in-memory state records
    /// while applying it.
    #[test]
    fn matches_what_the_memory_state_records() {
        let mut rng = StdRng::seed_from_u64(7);
        let addresses: Vec<Address> = (1..6u8).map(Address::repeat_byte).collect();
        let mut ws = WorldState::default();
        for _ in 0..400 {
            let changes = random_changes(&mut rng, &addresses);
            let expected = ws.clone().apply(&changes);
            let got = undo_for(&ws, slots_of(&ws), &changes).unwrap();
            assert_eq!(normalised(&got), normalised(&expected), "{changes:?}");
            ws.apply(&changes);
        }
    }
}
