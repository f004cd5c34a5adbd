//! Webhook secrets and signatures, in the Standard Webhooks scheme: a secret is `whsec_`
//! followed by the base64 of its key; a delivery carries `webhook-id` (the message id, the same
//! on every attempt: the receiver's idempotency key), `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`: `v1,` and the base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}"),
//! one such entry per valid secret, separated by spaces (two while a rotated-out secret still
//! signs). Receivers check any one of them and refuse old timestamps (replay).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A fresh secret: 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` header for `body` under each of `secrets` (ours are always
/// well-formed; one that is not is left out rather than signed with).
pub fn signature_header(secrets: &[&str], message_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| {
            let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
            mac.update(message_id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_signs_and_a_rotated_pair_signs_twice() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a != b);
        let one = signature_header(&[&a], "msg_1", 1_700_000_000, b"{}");
        assert!(one.starts_with("v1,") && !one.contains(' '));
        let two = signature_header(&[&a, &b], "msg_1", 1_700_000_000, b"{}");
        assert_eq!(two.split(' ').next(), Some(one.as_str()));
        assert_eq!(two.split(' ').count(), 2);
        assert_ne!(signature_header(&[&a], "msg_1", 1_700_000_001, b"{}"), one, "the timestamp is signed");
        assert_eq!(signature_header(&["not-a-secret"], "m", 1, b""), "");
    }
}
