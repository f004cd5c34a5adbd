//! RFC 9162 §2.1 Merkle trees: the hashing, inclusion and consistency proofs, and their
//! verification — the ground the per-tenant audit log's tree (issue 18) is to stand on. Not yet
//! wired to the audit log: this module is pure computation, with no database.
//!
//! Leaf hash = SHA-256(0x00 ‖ leaf), interior node = SHA-256(0x01 ‖ left ‖ right), and a tree of
//! n > 1 leaves splits at k, the largest power of two below n. Every hash a proof needs is the
//! root of a *complete* subtree (2^level leaves starting at a multiple of 2^level) or is computed
//! from O(log n) of them, so a store that keeps complete subtrees' roots by (level, index) —
//! `Nodes` — answers any proof without reading the whole log. `Frontier` appends leaves in
//! O(log n), handing back the complete subtrees each append finishes (what such a store keeps).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The roots of complete subtrees of one tree: `node(level, index)` is the root of leaves
/// `[index << level, (index + 1) << level)`, asked only for subtrees inside the tree.
pub trait Nodes {
    fn node(&self, level: u32, index: u64) -> Hash;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} leaves")]
    NoSuchLeaf { index: u64, size: u64 },
    #[error("no consistency proof from size {from} to size {to}: need 0 < from <= to")]
    BadSizes { from: u64, to: u64 },
}

/// The largest power of two below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `[start, start + len)`, len ≥ 1, from complete subtrees (§2.1.1). `start` is
/// always a multiple of the largest power of two not above `len` on the recursion's paths.
fn range_root(nodes: &impl Nodes, start: u64, len: u64) -> Hash {
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return nodes.node(level, start >> level);
    }
    let k = split(len);
    node_hash(&range_root(nodes, start, k), &range_root(nodes, start + k, len - k))
}

/// The root of the first `size` leaves.
pub fn root(nodes: &impl Nodes, size: u64) -> Hash {
    if size == 0 { empty_root() } else { range_root(nodes, 0, size) }
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (§2.1.3.1), leaf side
/// first.
pub fn inclusion_proof(nodes: &impl Nodes, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::NoSuchLeaf { index, size });
    }
    // PATH(m, D[start, start + len)), iteratively: siblings are found root side first.
    let (mut m, mut start, mut len) = (index, 0, size);
    let mut path = Vec::new();
    while len > 1 {
        let k = split(len);
        if m < k {
            path.push(range_root(nodes, start + k, len - k));
            len = k;
        } else {
            path.push(range_root(nodes, start, k));
            m -= k;
            start += k;
            len -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of the first `from` leaves is a prefix of the tree of the first
/// `to` (§2.1.4.1), empty when the sizes are equal.
pub fn consistency_proof(nodes: &impl Nodes, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    if from == 0 || from > to {
        return Err(ProofError::BadSizes { from, to });
    }
    // SUBPROOF(m, D[start, start + len), b), iteratively; hashes found root side first.
    let (mut m, mut start, mut len, mut whole) = (from, 0, to, true);
    let mut proof = Vec::new();
    while m != len {
        let k = split(len);
        if m <= k {
            proof.push(range_root(nodes, start + k, len - k));
            len = k;
        } else {
            proof.push(range_root(nodes, start, k));
            m -= k;
            start += k;
            len -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(range_root(nodes, start, len));
    }
    proof.reverse();
    Ok(proof)
}

/// Both verifications' step: when `f` is a left child on the right edge, right-shift `f` and
/// `s` together until `f` is a right child or 0 (§2.1.3.2 step 4b, §2.1.4.2 step 6b).
fn climb(f: &mut u64, s: &mut u64) {
    while *f & 1 == 0 && *f != 0 {
        *f >>= 1;
        *s >>= 1;
    }
}

/// §2.1.3.2: whether `proof` shows the leaf hashed `leaf` at `index` in the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            climb(&mut f, &mut s);
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// §2.1.4.2: whether `proof` shows the tree of `from` leaves (root `from_root`) is a prefix of
/// the tree of `to` leaves (root `to_root`). Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(from: u64, to: u64, from_root: &Hash, to_root: &Hash, proof: &[Hash]) -> bool {
    if from == 0 || from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            climb(&mut f, &mut s);
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *from_root && sr == *to_root && s == 0
}

/// The right edge of a growing tree: the roots of its largest complete subtrees, largest first
/// (one per set bit of `size`). Enough to append and to compute the root, in O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf (its hash); returns every complete subtree the append finished, as
    /// (level, index, root), the leaf itself first.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let (mut level, mut index, mut hash) = (0u32, self.size, leaf);
        let mut finished = vec![(level, index, hash)];
        while (self.size >> level) & 1 == 1 {
            let Some(left) = self.peaks.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            finished.push((level, index, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
        finished
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else { return empty_root() };
        peaks.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

/// A tree held in memory with every complete subtree's root (tests, and small tools).
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    pub fn push(&mut self, leaf: &[u8]) {
        for (level, index, hash) in self.frontier.append(leaf_hash(leaf)) {
            let level = level as usize;
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            debug_assert_eq!(self.levels[level].len() as u64, index);
            self.levels[level].push(hash);
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl Nodes for MemoryTree {
    fn node(&self, level: u32, index: u64) -> Hash {
        // Asked only for complete subtrees inside the tree, which `push` stored.
        self.levels
            .get(level as usize)
            .and_then(|l| usize::try_from(index).ok().and_then(|i| l.get(i)))
            .copied()
            .unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The leaves of Certificate Transparency's published test vectors.
    const CT_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    /// Their roots for the first 0..=8 leaves (also recomputed here with a ten-line Python
    /// MTH written from the RFC, independently of this module).
    const CT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// MTH straight from §2.1.1, over the leaves themselves: the reference the stored-node
    /// computations are checked against.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn tree_of(n: usize) -> (MemoryTree, Vec<Vec<u8>>) {
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("event {i}").into_bytes()).collect();
        let mut tree = MemoryTree::default();
        leaves.iter().for_each(|l| tree.push(l));
        (tree, leaves)
    }

    #[test]
    fn roots_match_the_published_vectors() {
        let mut tree = MemoryTree::default();
        assert_eq!(hex(&tree.root()), CT_ROOTS[0]);
        for (i, leaf) in CT_LEAVES.iter().enumerate() {
            tree.push(leaf);
            assert_eq!(hex(&tree.root()), CT_ROOTS[i + 1], "{} leaves (frontier)", i + 1);
            assert_eq!(hex(&root(&tree, tree.size())), CT_ROOTS[i + 1], "{} leaves (stored nodes)", i + 1);
            for size in 0..=tree.size() {
                assert_eq!(hex(&root(&tree, size)), CT_ROOTS[size as usize], "an older size {size}");
            }
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_any_change_fails() {
        let (tree, leaves) = tree_of(40);
        for size in 1..=40u64 {
            let root_then = reference_root(&leaves[..size as usize]);
            assert_eq!(root(&tree, size), root_then, "size {size}");
            for index in 0..size {
                let leaf = leaf_hash(&leaves[index as usize]);
                let proof = inclusion_proof(&tree, index, size).expect("in the tree");
                assert!(proof.len() <= 64 - (size.leading_zeros() as usize) + 1, "O(log n)");
                assert!(verify_inclusion(index, size, &leaf, &proof, &root_then), "{index} of {size}");
                let other = leaf_hash(b"not the event");
                assert!(!verify_inclusion(index, size, &other, &proof, &root_then));
                if size > 1 {
                    assert!(!verify_inclusion((index + 1) % size, size, &leaf, &proof, &root_then), "{index}/{size}");
                    let mut bent = proof.clone();
                    bent[0][0] ^= 1;
                    assert!(!verify_inclusion(index, size, &leaf, &bent, &root_then));
                    assert!(!verify_inclusion(index, size, &leaf, &proof[1..], &root_then));
                }
            }
        }
        assert_eq!(inclusion_proof(&tree, 5, 5), Err(ProofError::NoSuchLeaf { index: 5, size: 5 }));
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_change_fails() {
        let (tree, leaves) = tree_of(40);
        for to in 1..=40u64 {
            let to_root = reference_root(&leaves[..to as usize]);
            for from in 1..=to {
                let from_root = reference_root(&leaves[..from as usize]);
                let proof = consistency_proof(&tree, from, to).expect("sizes in order");
                assert!(verify_consistency(from, to, &from_root, &to_root, &proof), "{from} → {to}");
                let forged = leaf_hash(b"rewritten history");
                assert!(!verify_consistency(from, to, &forged, &to_root, &proof), "{from} → {to}");
                assert!(!verify_consistency(from, to, &from_root, &forged, &proof), "{from} → {to}");
                if let Some(first) = proof.first() {
                    let mut bent = proof.clone();
                    bent[0] = node_hash(first, first);
                    assert!(!verify_consistency(from, to, &from_root, &to_root, &bent), "{from} → {to}");
                }
            }
        }
        assert!(consistency_proof(&tree, 0, 3).is_err());
        assert!(consistency_proof(&tree, 4, 3).is_err());
    }

    #[test]
    fn the_frontier_hands_back_each_finished_subtree_once() {
        let mut frontier = Frontier::default();
        let mut finished = Vec::new();
        for i in 0..8u8 {
            finished.extend(frontier.append(leaf_hash(&[i])).into_iter().map(|(l, i, _)| (l, i)));
        }
        // 8 leaves, 4 pairs, 2 quads, 1 root of eight.
        let count = |level| finished.iter().filter(|(l, _)| *l == level).count();
        assert_eq!((count(0), count(1), count(2), count(3)), (8, 4, 2, 1));
        assert_eq!(frontier.size(), 8);
    }
}
