//! Opaque refresh tokens: 32 random bytes, hex on the wire, only their SHA-256 hash in the
//! database. No HTTP and no SQL here; `http::routes::auth` stores and rotates them.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// How long a refresh token may wait to be used. Every use rotates it, so an active session
/// slides on; an idle one ends after this.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Prefix that makes a leaked token recognisable (secret scanners, logs).
const PREFIX: &str = "rgr_";

/// A refresh token as handed to the client once, with the hash that is stored.
pub struct NewRefreshToken {
    pub token: String,
    pub hash: [u8; 32],
}

impl NewRefreshToken {
    pub fn generate() -> NewRefreshToken {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
        let token = format!("{PREFIX}{}", hex::encode(secret));
        let hash = digest(&token);
        NewRefreshToken { token, hash }
    }
}

/// The stored hash of a token a client presents, or None when it cannot be one of ours
/// (then nothing is looked up). A plain hash suffices: the secret has 256 bits of entropy,
/// so unlike a password it needs no slow, salted hash.
pub fn hash_presented(token: &str) -> Option<[u8; 32]> {
    let hex_part = token.strip_prefix(PREFIX)?;
    (hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_own_hash_matches() {
        let (a, b) = (NewRefreshToken::generate(), NewRefreshToken::generate());
        assert_ne!(a.token, b.token);
        assert_eq!(hash_presented(&a.token), Some(a.hash));
        assert_ne!(a.hash, b.hash);
        for bad in ["", "rgr_", "rgr_xyz", &a.token[4..], &format!("{}0", a.token)] {
            assert_eq!(hash_presented(bad), None, "{bad:?}");
        }
    }
}
