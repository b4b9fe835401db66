//! How branch nodes and nibble paths are stored, and the prefix set of changed keys.

use alloy_primitives::B256;
use alloy_trie::{BranchNodeCompact, Nibbles, TrieMask};

use crate::storage::StorageError;

/// A nibble path as a table key: one byte per nibble, so SQLite's byte order is trie order and
/// every path sorts right before the paths it is a prefix of.
pub(crate) fn path_key(path: &Nibbles) -> Vec<u8> {
    path.to_vec()
}

/// The nibble path of a table key written by [`path_key`].
pub(crate) fn key_path(key: &[u8]) -> Result<Nibbles, StorageError> {
    if key.len() > 64 || key.iter().any(|n| *n > 0x0f) {
        return Err(StorageError::Corrupt(format!("trie node path {} is not a nibble path", hex(key))));
    }
    Ok(Nibbles::from_nibbles_unchecked(key))
}

fn hex(b: &[u8]) -> String {
    alloy_primitives::hex::encode(b)
}

/// The first and last 32-byte keys whose nibbles start with `prefix` (both inclusive).
pub(crate) fn key_range(prefix: &Nibbles) -> (B256, B256) {
    let mut lo = [0u8; 32];
    let mut hi = [0xffu8; 32];
    for (i, nibble) in prefix.iter().enumerate().take(64) {
        let byte = i / 2;
        if i % 2 == 0 {
            lo[byte] = nibble << 4;
            hi[byte] = (nibble << 4) | 0x0f;
        } else {
            lo[byte] |= nibble;
            hi[byte] = (hi[byte] & 0xf0) | nibble;
        }
    }
    (B256::from(lo), B256::from(hi))
}

/// Encodes a branch node: the three masks (big-endian u16), a root-hash flag (and the root
/// hash), then the child hashes.
pub(crate) fn encode_node(node: &BranchNodeCompact) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + 32 * (node.hashes.len() + 1));
    out.extend_from_slice(&node.state_mask.get().to_be_bytes());
    out.extend_from_slice(&node.tree_mask.get().to_be_bytes());
    out.extend_from_slice(&node.hash_mask.get().to_be_bytes());
    match node.root_hash {
        Some(root) => {
            out.push(1);
            out.extend_from_slice(root.as_slice());
        }
        None => out.push(0),
    }
    for h in node.hashes.iter() {
        out.extend_from_slice(h.as_slice());
    }
    out
}

/// Decodes a branch node written by [`encode_node`], checking the masks agree with each other
/// and with the number of hashes.
pub(crate) fn decode_node(raw: &[u8]) -> Result<BranchNodeCompact, StorageError> {
    let bad = |why: &str| StorageError::Corrupt(format!("stored trie node: {why}"));
    if raw.len() < 7 {
        return Err(bad("shorter than its masks"));
    }
    let mask = |i: usize| TrieMask::new(u16::from_be_bytes([raw[i], raw[i + 1]]));
    let (state, tree, hash) = (mask(0), mask(2), mask(4));
    let (root, rest) = match raw[6] {
        0 => (None, &raw[7..]),
        1 if raw.len() >= 39 => (Some(B256::from_slice(&raw[7..39])), &raw[39..]),
        _ => return Err(bad("bad root-hash flag")),
    };
    if !tree.is_subset_of(state) || !hash.is_subset_of(state) {
        return Err(bad("tree or hash mask names a child the state mask does not have"));
    }
    if rest.len() != 32 * hash.count_ones() as usize {
        return Err(bad("the number of child hashes does not match the hash mask"));
    }
    let hashes = rest.chunks_exact(32).map(B256::from_slice).collect();
    Ok(BranchNodeCompact::new(state, tree, hash, hashes, root))
}

/// The changed keys of one trie, sorted, answering "did anything under this prefix change?".
#[derive(Debug, Default, Clone)]
pub(crate) struct PrefixSet {
    keys: Vec<Nibbles>,
}

impl PrefixSet {
    /// A prefix set of the given keys (any order).
    pub(crate) fn new(mut keys: Vec<Nibbles>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self { keys }
    }

    /// Whether some changed key starts with `prefix`.
    pub(crate) fn contains(&self, prefix: &Nibbles) -> bool {
        let i = self.keys.partition_point(|k| k < prefix);
        self.keys.get(i).is_some_and(|k| k.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_covers_exactly_the_prefix() {
        let (lo, hi) = key_range(&Nibbles::from_nibbles([0xa, 0xb, 0xc]));
        assert_eq!(lo[0..2], [0xab, 0xc0]);
        assert_eq!(hi[0..2], [0xab, 0xcf]);
        assert!(hi[2..].iter().all(|b| *b == 0xff) && lo[2..].iter().all(|b| *b == 0));
        let (lo, hi) = key_range(&Nibbles::default());
        assert_eq!((lo, hi), (B256::ZERO, B256::repeat_byte(0xff)));
    }

    #[test]
    fn node_codec_round_trips_and_refuses_bad_masks() {
        let node = BranchNodeCompact::new(0b1011, 0b0001, 0b0011, vec![B256::repeat_byte(1); 2], None);
        assert_eq!(decode_node(&encode_node(&node)).unwrap(), node);
        let mut raw = encode_node(&node);
        raw.truncate(raw.len() - 1);
        assert!(decode_node(&raw).is_err());
        let mut raw = encode_node(&node);
        raw[1] = 0; // state mask loses children the tree mask names
        assert!(decode_node(&raw).is_err());
    }

    #[test]
    fn prefix_set_finds_prefixes_only() {
        let set = PrefixSet::new(vec![Nibbles::from_nibbles([1, 2, 3]), Nibbles::from_nibbles([4])]);
        assert!(set.contains(&Nibbles::default()));
        assert!(set.contains(&Nibbles::from_nibbles([1, 2])));
        assert!(set.contains(&Nibbles::from_nibbles([4])));
        assert!(!set.contains(&Nibbles::from_nibbles([1, 3])));
        assert!(!set.contains(&Nibbles::from_nibbles([4, 0])));
    }
}
