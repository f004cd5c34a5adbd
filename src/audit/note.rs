//! Signed tree heads as C2SP notes (issue 18, groundwork, not wired yet): the `tlog-checkpoint`
//! text (origin, tree size, base64 root) signed in the `signed-note` format, so transparency-log
//! tooling and outside witnesses can read, check and co-sign a tenant's log head.
//!
//! A note is its text (non-empty, every line ending in `\n`), a blank line, then signature
//! lines `— <key name> <base64(key id ‖ Ed25519 signature)>`; the signature covers the text.
//! The key id is the first four bytes of SHA-256(key name ‖ `\n` ‖ 0x01 ‖ public key), 0x01
//! naming Ed25519; a verifier shares `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

const ED25519: u8 = 0x01;
/// U+2014 and a space: how every signature line starts.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a checkpoint: {0}")]
    Checkpoint(&'static str),
    #[error("not a signed note: {0}")]
    Malformed(&'static str),
    #[error("no valid signature by {0}")]
    NotSigned(String),
}

/// A log's head: its origin (which log), how many leaves, and the root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`.
    pub fn text(&self) -> Result<String, NoteError> {
        if self.origin.is_empty() || self.origin.chars().any(char::is_control) {
            return Err(NoteError::Checkpoint("the origin must be one non-empty line"));
        }
        Ok(format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root)))
    }

    /// Read a checkpoint from a note's text (extension lines after the root are allowed and
    /// ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.strip_suffix('\n').ok_or(NoteError::Checkpoint("no final newline"))?.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Checkpoint("no origin"))?;
        let size = lines.next().ok_or(NoteError::Checkpoint("no tree size"))?;
        // Decimal, without a sign or leading zeros (but "0" itself).
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(NoteError::Checkpoint("the tree size is not a plain decimal"));
        }
        let size = size.parse().map_err(|_| NoteError::Checkpoint("the tree size is too large"))?;
        let root = lines.next().ok_or(NoteError::Checkpoint("no root hash"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Checkpoint("the root is not 32 bytes of base64"))?;
        Ok(Checkpoint { origin: origin.to_string(), size, root })
    }
}

/// The 4-byte id of `name`'s Ed25519 key.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// What a verifier is given: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let id: String = key_id(name, key).iter().map(|b| format!("{b:02x}")).collect();
    let mut typed = vec![ED25519];
    typed.extend_from_slice(key.as_bytes());
    format!("{name}+{id}+{}", STANDARD.encode(typed))
}

/// Read a verifier key back: its name and public key (the id is checked against them).
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), NoteError> {
    let bad = || NoteError::Malformed("a verifier key is <name>+<hex id>+<base64 key>");
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
    let typed = STANDARD.decode(key).map_err(|_| bad())?;
    let (&kind, key) = typed.split_first().ok_or_else(bad)?;
    let key: [u8; 32] = key.try_into().map_err(|_| bad())?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad())?;
    let expected: String = key_id(name, &key).iter().map(|b| format!("{b:02x}")).collect();
    if kind != ED25519 || id != expected || !valid_name(name) {
        return Err(bad());
    }
    Ok((name.to_string(), key))
}

/// A key name: non-empty, no spaces, no `+`, nothing that is not printable.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// Sign `text` (the note's text, every line ending in `\n`) as `name`; returns the note.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    if !valid_name(name) {
        return Err(NoteError::Malformed("the key name must be non-empty, without spaces or '+'"));
    }
    if text.is_empty() || !text.ends_with('\n') || text.contains("\n\n") {
        return Err(NoteError::Malformed("the text must be non-empty lines, each ending in a newline"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("the text must not hold control characters"));
    }
    let signature = key.sign(text.as_bytes());
    let mut bytes = key_id(name, &key.verifying_key()).to_vec();
    bytes.extend_from_slice(&signature.to_bytes());
    Ok(format!("{text}\n{SIGNATURE_PREFIX}{name} {}\n", STANDARD.encode(bytes)))
}

/// Check that `note` carries a valid signature by `name`'s `key`; returns the signed text.
/// Signature lines of other keys are ignored (witnesses add theirs); one by this key that
/// does not verify refuses the note.
pub fn open<'n>(note: &'n str, name: &str, key: &VerifyingKey) -> Result<&'n str, NoteError> {
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
    if !signatures.ends_with('\n') {
        return Err(NoteError::Malformed("the last signature line has no newline"));
    }
    let id = key_id(name, key);
    for line in signatures.strip_suffix('\n').unwrap_or(signatures).split('\n') {
        let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(NoteError::Malformed("a signature line without '— '"))?;
        let (signer, encoded) = rest.split_once(' ').ok_or(NoteError::Malformed("a signature line without a name"))?;
        let bytes = STANDARD.decode(encoded).map_err(|_| NoteError::Malformed("a signature that is not base64"))?;
        if bytes.len() < 4 {
            return Err(NoteError::Malformed("a signature shorter than its key id"));
        }
        if signer != name || bytes[..4] != id {
            continue;
        }
        let signature = Signature::from_slice(&bytes[4..]).map_err(|_| NoteError::NotSigned(name.to_string()))?;
        return match key.verify(text.as_bytes(), &signature) {
            Ok(()) => Ok(text),
            Err(_) => Err(NoteError::NotSigned(name.to_string())),
        };
    }
    Err(NoteError::NotSigned(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_checkpoint_round_trips_through_a_signed_note() {
        let head = Checkpoint { origin: "rowguard.example/audit/acme".into(), size: 42, root: [7; 32] };
        let text = head.text().expect("text");
        assert_eq!(text, format!("rowguard.example/audit/acme\n42\n{}\n", STANDARD.encode([7u8; 32])));
        let signer = key(1);
        let note = sign(&text, "rowguard.example/audit", &signer).expect("sign");
        assert!(note.starts_with(&format!("{text}\n\u{2014} rowguard.example/audit ")), "{note}");
        let opened = open(&note, "rowguard.example/audit", &signer.verifying_key()).expect("verifies");
        assert_eq!(Checkpoint::parse(opened).expect("parse"), head);
        // The verifier key carries name, id and key, and reads back.
        let vkey = verifier_key("rowguard.example/audit", &signer.verifying_key());
        assert_eq!(parse_verifier_key(&vkey).expect("vkey"), ("rowguard.example/audit".into(), signer.verifying_key()));
    }

    #[test]
    fn a_changed_head_a_wrong_key_or_a_garbled_note_is_refused() {
        let head = Checkpoint { origin: "o".into(), size: 3, root: [1; 32] };
        let signer = key(2);
        let note = sign(&head.text().expect("text"), "log", &signer).expect("sign");
        let grown = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(open(&grown, "log", &signer.verifying_key()), Err(NoteError::NotSigned("log".into())));
        assert!(open(&note, "log", &key(3).verifying_key()).is_err(), "another key");
        assert!(open(&note, "other", &signer.verifying_key()).is_err(), "another name");
        assert!(open(note.trim_end(), "log", &signer.verifying_key()).is_err());
        // A witness's line alongside the log's is ignored by a verifier of the log.
        let witnessed = format!("{note}\u{2014} witness {}\n", STANDARD.encode([0u8; 68]));
        assert!(open(&witnessed, "log", &signer.verifying_key()).is_ok());
        for bad in ["o\n3\n", "o\n03\n{r}\n", "o\n-3\n{r}\n", "\n3\n{r}\n", "o\n3\nnot base64\n"] {
            let bad = bad.replace("{r}", &STANDARD.encode([1u8; 32]));
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(sign("two\n\nparagraphs\n", "log", &signer).is_err());
        assert!(sign("no newline", "log", &signer).is_err());
        assert!(sign("x\n", "bad name", &signer).is_err());
    }

    /// The example of Go's golang.org/x/mod/sumdb/note documentation, a note signed by a key
    /// this code never held: the format and key id are the ecosystem's, not only our own.
    #[test]
    fn the_go_reference_example_verifies() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let (name, key) = parse_verifier_key(vkey).expect("the published verifier key");
        let text = open(note, &name, &key).expect("the published note verifies");
        assert!(text.starts_with("If you think cryptography"));
    }
}
