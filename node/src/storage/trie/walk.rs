//! The walk over one trie's stored branch nodes that feeds alloy-trie's `HashBuilder`.
//!
//! Under a prefix where no key changed, a stored child hash goes to `add_branch` and the subtrie
//! is never read. Under a changed prefix the walk descends into the stored node below; where no
//! node is stored (a few leaves at most) the leaves are read. Every stored node the walk enters
//! is rebuilt, so it is listed as removed and the builder's updates put back what still exists.

use alloy_primitives::B256;
use alloy_trie::{BranchNodeCompact, HashBuilder, Nibbles};

use super::nodes::PrefixSet;
use crate::storage::StorageError;

/// Where one trie's stored nodes and leaves come from (the database merged with a block's
/// changes).
pub(crate) trait TrieSource {
    /// The first stored branch node whose path starts with `prefix`.
    fn node_under(&mut self, prefix: &Nibbles) -> Result<Option<(Nibbles, BranchNodeCompact)>, StorageError>;
    /// Every leaf under `prefix`, the stored ones merged with the changes, in key order.
    fn leaves_under(&mut self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>) -> Result<(), StorageError>;
    /// The leaves the changes add or update under `prefix`, in key order.
    fn changed_under(&self, prefix: &Nibbles, out: &mut Vec<(B256, Vec<u8>)>);
}

/// The nodes one trie gained and lost.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrieUpdates {
    /// Stored nodes the walk rebuilt: delete these first.
    pub removed: Vec<Nibbles>,
    /// Nodes to store (after the deletes), sorted by path.
    pub nodes: Vec<(Nibbles, BranchNodeCompact)>,
}

/// Computes the root of the trie `source` describes, with `changed` its changed keys.
/// With `retainer`, the builder also keeps proofs (the proven keys must be in `changed`).
pub(crate) fn root_of(
    source: &mut impl TrieSource,
    changed: &PrefixSet,
    builder: HashBuilder,
) -> Result<(B256, TrieUpdates, HashBuilder), StorageError> {
    let mut walk =
        Walk { source, changed, hb: builder.with_updates(true), removed: Vec::new(), buf: Vec::new() };
    walk.feed(Nibbles::default())?;
    let mut hb = walk.hb;
    let root = hb.root();
    let (hb, updated) = hb.split();
    let mut nodes: Vec<_> = updated.into_iter().collect();
    nodes.sort_unstable_by_key(|n| n.0);
    Ok((root, TrieUpdates { removed: walk.removed, nodes }, hb))
}

struct Walk<'a, S> {
    source: &'a mut S,
    changed: &'a PrefixSet,
    hb: HashBuilder,
    removed: Vec<Nibbles>,
    buf: Vec<(B256, Vec<u8>)>,
}

impl<S: TrieSource> Walk<'_, S> {
    /// Feeds everything under `prefix` to the builder, in key order.
    fn feed(&mut self, prefix: Nibbles) -> Result<(), StorageError> {
        let Some((path, node)) = self.source.node_under(&prefix)? else {
            return self.feed_leaves(&prefix);
        };
        self.removed.push(path);
        // Between `prefix` and the stored node lies an extension: the stored trie has no
        // leaves there, so only keys the changes add can be there (before or after the node).
        let mut added = Vec::new();
        if path.len() > prefix.len() && self.changed.contains(&prefix) {
            self.source.changed_under(&prefix, &mut added);
            added.retain(|(k, _)| !Nibbles::unpack(k).starts_with(&path));
        }
        let (before, after): (Vec<_>, Vec<_>) =
            added.into_iter().partition(|(k, _)| Nibbles::unpack(k) < path);
        for (key, value) in &before {
            self.hb.add_leaf(Nibbles::unpack(key), value);
        }
        if node.tree_mask.is_empty() {
            self.feed_bottom_node(path, &node)?;
        } else {
            self.feed_children(path, &node)?;
        }
        for (key, value) in &after {
            self.hb.add_leaf(Nibbles::unpack(key), value);
        }
        Ok(())
    }

    /// The children of a stored node, one by one.
    fn feed_children(&mut self, path: Nibbles, node: &BranchNodeCompact) -> Result<(), StorageError> {
        for nibble in 0..16u8 {
            let mut child = path;
            child.push(nibble);
            let changed = self.changed.contains(&child);
            if !node.state_mask.is_bit_set(nibble) {
                if changed {
                    self.feed_leaves(&child)?;
                }
            } else if !changed && node.hash_mask.is_bit_set(nibble) {
                let hash = node.hash_for_nibble(nibble);
                self.hb.add_branch(child, hash, node.tree_mask.is_bit_set(nibble));
            } else if node.tree_mask.is_bit_set(nibble) {
                self.feed(child)?;
            } else {
                self.feed_leaves(&child)?;
            }
        }
        Ok(())
    }

    /// The children of a stored node with no stored node below it: its subtrie holds a few
    /// leaves per child, so they are read in one range scan (not one per child), and those
    /// under unchanged hashed children are skipped for the stored hash.
    fn feed_bottom_node(&mut self, path: Nibbles, node: &BranchNodeCompact) -> Result<(), StorageError> {
        let mut leaves = Vec::new();
        self.source.leaves_under(&path, &mut leaves)?;
        let depth = path.len();
        let nibble_of = |key: &B256| {
            let byte = key[depth / 2];
            if depth.is_multiple_of(2) {
                byte >> 4
            } else {
                byte & 0x0f
            }
        };
        let mut next = 0;
        for nibble in 0..16u8 {
            let start = next;
            while next < leaves.len() && nibble_of(&leaves[next].0) == nibble {
                next += 1;
            }
            let mut child = path;
            child.push(nibble);
            let hashed = node.state_mask.is_bit_set(nibble) && node.hash_mask.is_bit_set(nibble);
            if hashed && !self.changed.contains(&child) {
                self.hb.add_branch(child, node.hash_for_nibble(nibble), false);
            } else {
                for (key, value) in &leaves[start..next] {
                    self.hb.add_leaf(Nibbles::unpack(key), value);
                }
            }
        }
        Ok(())
    }

    fn feed_leaves(&mut self, prefix: &Nibbles) -> Result<(), StorageError> {
        self.buf.clear();
        self.source.leaves_under(prefix, &mut self.buf)?;
        for (key, value) in &self.buf {
            self.hb.add_leaf(Nibbles::unpack(key), value);
        }
        Ok(())
    }
}
