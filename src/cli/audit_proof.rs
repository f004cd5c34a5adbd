//! `rowguard audit verify-proof`: an auditor's check of a proof against a signed tree head,
//! with files and a public key only — no database, no service. The note's signature is
//! checked with the verifier key, the checkpoint read from it, and the proof walked to that
//! root (RFC 9162 §2.1.3.2 and §2.1.4.2).

use std::path::Path;

use anyhow::Context;
use rowguard::audit::merkle::{self, Hash};
use rowguard::audit::note;
use serde::Deserialize;

#[derive(Deserialize)]
struct Inclusion {
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
}

#[derive(Deserialize)]
struct Consistency {
    from: u64,
    to: u64,
    proof: Vec<String>,
}

fn hash(hex_text: &str, what: &str) -> anyhow::Result<Hash> {
    let bytes = hex::decode(hex_text).with_context(|| format!("{what} is not hex"))?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("{what} is not 32 bytes"))
}

fn hashes(list: &[String], what: &str) -> anyhow::Result<Vec<Hash>> {
    list.iter().map(|h| hash(h, what)).collect()
}

/// Open a signed head with the verifier key: the checkpoint it carries.
fn signed_head(path: &Path, vkey: &str) -> anyhow::Result<note::Checkpoint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (name, key) = note::parse_verifier_key(vkey.trim()).context("the verifier key")?;
    let body = note::open(&text, &name, &key).with_context(|| format!("{}: the signature", path.display()))?;
    note::Checkpoint::parse(body).with_context(|| format!("{}: the checkpoint", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the proof's JSON", path.display()))
}

/// Check the proof; the sentence to print when it holds, an error naming what fails otherwise.
pub(crate) fn check(
    vkey: &str,
    head: &Path,
    inclusion: Option<&Path>,
    consistency: Option<&Path>,
    old_head: Option<&Path>,
) -> anyhow::Result<String> {
    let head = signed_head(head, vkey)?;
    if let Some(path) = inclusion {
        let p: Inclusion = read_json(path)?;
        anyhow::ensure!(
            p.tree_size == head.size,
            "the proof is for a tree of {} leaves, the signed head covers {}",
            p.tree_size,
            head.size
        );
        let leaf = hash(&p.leaf_hash, "leaf_hash")?;
        let path = hashes(&p.audit_path, "an audit path hash")?;
        anyhow::ensure!(
            merkle::verify_inclusion(p.leaf_index, p.tree_size, &leaf, &path, &head.root),
            "the audit path does not lead from leaf {} to the signed root of {}",
            p.leaf_index,
            head.origin
        );
        return Ok(format!(
            "ok: leaf {} ({}) is in {} at size {} (signature and inclusion proof verified)",
            p.leaf_index, p.leaf_hash, head.origin, head.size
        ));
    }
    let (Some(path), Some(old)) = (consistency, old_head) else {
        anyhow::bail!("give --proof FILE, or --consistency FILE with --old-head FILE");
    };
    let old = signed_head(old, vkey)?;
    anyhow::ensure!(
        old.origin == head.origin,
        "the two heads are of different logs: {} and {}",
        old.origin,
        head.origin
    );
    let p: Consistency = read_json(path)?;
    anyhow::ensure!(
        p.from == old.size && p.to == head.size,
        "the proof is from {} to {} leaves, the heads are of {} and {}",
        p.from,
        p.to,
        old.size,
        head.size
    );
    let proof = hashes(&p.proof, "a proof hash")?;
    anyhow::ensure!(
        merkle::verify_consistency(old.size, head.size, &old.root, &head.root, &proof),
        "the log at {} leaves does not extend the log at {} leaves: the proof fails",
        head.size,
        old.size
    );
    Ok(format!(
        "ok: {} at {} leaves extends its signed head of {} leaves (signatures and consistency proof verified)",
        head.origin, head.size, old.size
    ))
}
