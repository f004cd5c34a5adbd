//! JWT access tokens: EdDSA (Ed25519) only, with key ids so keys can rotate. `alg` is pinned
//! (a token naming any other algorithm is refused before its signature is looked at), and
//! `exp`, `iss` and `aud` are always checked.
//!
//! Rotation: one key signs; it and any number of older public keys (by key id) verify, so a
//! new signing key takes over without logging anyone out. The public keys are published as a
//! JWK set (`/.well-known/jwks.json`). Tenant and operator tokens carry different audiences,
//! so neither is accepted where the other is expected.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cache::BoundedCache;
use crate::domain::{OperatorId, Role, TenantId, UserId};

/// Bound on the memory of remembered verified tokens (each weighs its length plus its claims).
const VERIFIED_CACHE_BYTES: usize = 10 << 20;
/// A verified token's entry past the token's own bytes: the claims and the map's overhead.
const VERIFIED_ENTRY_OVERHEAD: usize = 256;

/// Audience of tokens that act inside one tenant. Platform (operator) tokens get another.
pub const TENANT_AUDIENCE: &str = "rowguard:tenant";
/// Audience of operator tokens (the platform API); refused on every tenant route.
pub const PLATFORM_AUDIENCE: &str = "rowguard:platform";

/// An operator's access token: no tenant, no role inside one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformClaims {
    pub sub: OperatorId,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: UserId,
    pub tid: TenantId,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token names an unknown signing key")]
    UnknownKey,
    #[error("the token's signature, algorithm or claims are not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key: {0}")]
    Key(String),
    #[error("signing key file: {0}")]
    Io(#[from] std::io::Error),
}

pub struct JwtKeys {
    /// Tokens whose signature and claims were already checked, keyed by the whole token
    /// (signature included), so a hit is the very same bytes. Ed25519 verification is the
    /// largest CPU cost of a read request; a client reuses its token for many requests.
    verified: BoundedCache<String, AccessClaims>,
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    /// Every verifying key as a public JWK, signing key first (`/.well-known/jwks.json`).
    published: Vec<Jwk>,
    validation: Validation,
    platform_validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl JwtKeys {
    /// From a PKCS#8 PEM private key (production), with its key id.
    pub fn from_pem(pem: &str, kid: Option<&str>, issuer: &str, ttl: Duration) -> Result<JwtKeys, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Key(e.to_string()))?;
        Self::from_signing_key(&key, kid, issuer, ttl)
    }

    /// The development key: generated on first use and kept (mode 0600) in `path`.
    pub fn load_or_generate(path: &Path, issuer: &str, ttl: Duration) -> Result<JwtKeys, KeyError> {
        let pem = crate::key_file::read_or_create(path, crate::key_file::new_ed25519_pem)?;
        Self::from_pem(&pem, None, issuer, ttl)
    }

    fn from_signing_key(key: &SigningKey, kid: Option<&str>, issuer: &str, ttl: Duration) -> Result<JwtKeys, KeyError> {
        let der = key.to_pkcs8_der().map_err(|e| KeyError::Key(e.to_string()))?;
        let public = key.verifying_key().to_bytes();
        // Without an explicit id, name the key after its public half: stable across restarts.
        let kid = kid.map(str::to_string).unwrap_or_else(|| derived_kid(&public));
        let validation_for = |audience: &str| {
            let mut validation = Validation::new(Algorithm::EdDSA);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = 5;
            // jsonwebtoken ignores `nbf` unless told; a token not valid yet must be refused.
            validation.validate_nbf = true;
            validation
        };
        let mut keys = JwtKeys {
            verified: BoundedCache::new(ttl, VERIFIED_CACHE_BYTES, |token, _| token.len() + VERIFIED_ENTRY_OVERHEAD),
            verifying: HashMap::new(),
            published: Vec::new(),
            signing_kid: kid.clone(),
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            validation: validation_for(TENANT_AUDIENCE),
            platform_validation: validation_for(PLATFORM_AUDIENCE),
            issuer: issuer.to_string(),
            ttl,
        };
        keys.add_verifying_key(kid, &public)?;
        Ok(keys)
    }

    /// Also accept tokens signed by these public keys (`ROWGUARD_JWT_VERIFY_KEYS`): one or more
    /// SPKI PEM blocks (`-----BEGIN PUBLIC KEY-----`), each optionally preceded by a line
    /// `kid=<key id>`; without one, the id is derived from the key exactly as for a signing key
    /// without `ROWGUARD_JWT_KEY_ID`, so an old default key keeps its id. A literal `\n` counts
    /// as a line break, for environment files that cannot hold one.
    pub fn with_verify_keys(mut self, text: &str) -> Result<JwtKeys, KeyError> {
        let text = text.replace("\\n", "\n");
        let mut kid: Option<String> = None;
        let mut block: Option<String> = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(pem) = block.as_mut() {
                pem.push_str(line);
                pem.push('\n');
                if line.starts_with("-----END") {
                    let key = VerifyingKey::from_public_key_pem(pem)
                        .map_err(|e| KeyError::Key(format!("ROWGUARD_JWT_VERIFY_KEYS: {e}")))?;
                    let public = key.to_bytes();
                    let id = kid.take().unwrap_or_else(|| derived_kid(&public));
                    self.add_verifying_key(id, &public)?;
                    block = None;
                }
            } else if line.starts_with("-----BEGIN PUBLIC KEY-----") {
                block = Some(format!("{line}\n"));
            } else if let Some(id) = line.strip_prefix("kid=") {
                kid = Some(id.trim().to_string());
            } else {
                return Err(KeyError::Key(format!(
                    "ROWGUARD_JWT_VERIFY_KEYS: expected `kid=<id>` or a PEM public key, found {line:?}"
                )));
            }
        }
        if block.is_some() || kid.is_some() {
            return Err(KeyError::Key("ROWGUARD_JWT_VERIFY_KEYS: a key id or PEM block is incomplete".into()));
        }
        Ok(self)
    }

    fn add_verifying_key(&mut self, kid: String, public: &[u8; 32]) -> Result<(), KeyError> {
        if self.verifying.contains_key(&kid) {
            return Err(KeyError::Key(format!("two verification keys have the key id {kid:?}")));
        }
        let key = DecodingKey::from_ed_der(public);
        let mut jwk = Jwk::from_decoding_key(&key, Some(Algorithm::EdDSA)).map_err(|e| KeyError::Key(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        self.published.push(jwk);
        self.verifying.insert(kid, key);
        Ok(())
    }

    /// The public keys that verify tokens, signing key first, as a JWK set.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.published.clone() }
    }

    /// The key id new tokens are signed with.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Sign an access token for `user` acting in `tenant`.
    pub fn issue(&self, user: UserId, tenant: TenantId, role: Role) -> Result<String, KeyError> {
        let now = unix_now();
        let claims = AccessClaims {
            sub: user,
            tid: tenant,
            role,
            iat: now,
            exp: now + self.ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: TENANT_AUDIENCE.to_string(),
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| KeyError::Key(e.to_string()))
    }

    /// Sign an operator's token for the platform API (its own audience).
    pub fn issue_platform(&self, operator: OperatorId) -> Result<String, KeyError> {
        let now = unix_now();
        let claims = PlatformClaims {
            sub: operator,
            iat: now,
            exp: now + self.ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: PLATFORM_AUDIENCE.to_string(),
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing).map_err(|e| KeyError::Key(e.to_string()))
    }

    /// Verify an operator's token: as `verify`, with the platform audience. Not cached:
    /// platform requests are few, and each also checks the operator in the database.
    pub fn verify_platform(&self, token: &str) -> Result<PlatformClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        self.decode(token, &self.platform_validation)
    }

    /// Verify signature, algorithm, key id, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let now = unix_now();
        if let Some(claims) = self.verified.get(token)
            && claims.exp > now
        {
            return Ok(claims);
        }
        let claims = self.verify_uncached(token)?;
        if claims.exp > now {
            self.verified.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.decode(token, &self.validation)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str, validation: &Validation) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key = header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<T>(token, key, validation).map(|data| data.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::Base64(_) => {
                TokenError::Malformed
            }
            _ => TokenError::Invalid,
        })
    }
}

/// A key's default id, named after its public half: stable across restarts and the same
/// wherever the key is configured (signing key or verification key).
fn derived_kid(public: &[u8; 32]) -> String {
    let hex: String = public[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ed25519-{hex}")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &Path) -> JwtKeys {
        JwtKeys::load_or_generate(&dir.join("k.pem"), "rowguard", Duration::from_secs(60)).expect("keys")
    }

    // jsonwebtoken compiles without a crypto backend and panics on first use; this signs and
    // verifies for real so a missing backend fails here, not in production.
    #[test]
    fn signs_and_verifies_with_the_configured_backend() {
        let dir = std::env::temp_dir().join(format!("rowguard-jwt-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        let keys = keys(&dir);
        let (user, tenant) = (UserId::new_v7(), TenantId::new_v7());
        let token = keys.issue(user, tenant, Role::Member).expect("issue");
        let claims = keys.verify(&token).expect("verify");
        assert_eq!((claims.sub, claims.tid, claims.role), (user, tenant, Role::Member));
        // The same key file gives the same key (and key id) after a restart.
        assert!(
            super::JwtKeys::load_or_generate(&dir.join("k.pem"), "rowguard", Duration::from_secs(60))
                .expect("reload")
                .verify(&token)
                .is_ok()
        );
        let mut tampered = token.clone();
        tampered.pop();
        assert!(keys.verify(&tampered).is_err());
        let other =
            JwtKeys::load_or_generate(&dir.join("other.pem"), "rowguard", Duration::from_secs(60)).expect("other");
        assert_eq!(other.verify(&token).err(), Some(TokenError::UnknownKey));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh Ed25519 key as (private PKCS#8 PEM, public SPKI PEM).
    fn key_pair() -> (String, String) {
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let key = SigningKey::from_bytes(&seed);
        let private = key.to_pkcs8_pem(Default::default()).expect("private pem").to_string();
        let public = key.verifying_key().to_public_key_pem(Default::default()).expect("public pem");
        (private, public)
    }

    fn signer(private: &str, kid: Option<&str>) -> JwtKeys {
        JwtKeys::from_pem(private, kid, "rowguard", Duration::from_secs(60)).expect("keys")
    }

    #[test]
    fn a_token_signed_by_a_listed_old_key_verifies_and_one_by_an_unlisted_key_does_not() {
        let (old_private, old_public) = key_pair();
        let (new_private, _) = key_pair();
        let (stranger_private, _) = key_pair();
        let (user, tenant) = (UserId::new_v7(), TenantId::new_v7());
        let old = signer(&old_private, None);
        let old_token = old.issue(user, tenant, Role::Admin).expect("issue");
        let old_kid_token = signer(&old_private, Some("2025-q4")).issue(user, tenant, Role::Admin).expect("issue");

        // After rotation: the new key signs, the old public key is still listed (by its derived
        // id, and again under an explicit id), so tokens already out keep working.
        let rotated = signer(&new_private, Some("2026-q1"))
            .with_verify_keys(&format!("{old_public}\nkid=2025-q4\n{old_public}"))
            .expect("verify keys");
        assert_eq!(rotated.verify(&old_token).map(|c| c.sub).ok(), Some(user));
        assert_eq!(rotated.verify(&old_kid_token).map(|c| c.sub).ok(), Some(user));
        let new_token = rotated.issue(user, tenant, Role::Admin).expect("issue");
        assert!(rotated.verify(&new_token).is_ok());
        assert_eq!(rotated.jwks().keys.len(), 3);
        assert_eq!(rotated.jwks().keys[0].common.key_id.as_deref(), Some("2026-q1"));

        // Once the old key is dropped from the list, its tokens stop verifying.
        let retired = signer(&new_private, Some("2026-q1"));
        assert_eq!(retired.verify(&old_token).err(), Some(TokenError::UnknownKey));
        // An unlisted key is refused, also when it borrows a listed key's id.
        let stranger = signer(&stranger_private, None).issue(user, tenant, Role::Owner).expect("issue");
        assert_eq!(rotated.verify(&stranger).err(), Some(TokenError::UnknownKey));
        let impostor = signer(&stranger_private, Some("2025-q4")).issue(user, tenant, Role::Owner).expect("issue");
        assert_eq!(rotated.verify(&impostor).err(), Some(TokenError::Invalid));
    }

    #[test]
    fn verify_keys_that_do_not_parse_are_refused_at_start() {
        let (private, public) = key_pair();
        for bad in ["garbage", "kid=lonely", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"] {
            assert!(signer(&private, None).with_verify_keys(bad).is_err(), "{bad:?}");
        }
        // The signing key's own public key again, under its own id: a duplicate id.
        assert!(signer(&private, None).with_verify_keys(&public).is_err());
        // Escaped line breaks, as an environment file holds them.
        let (_, other_public) = key_pair();
        assert!(signer(&private, None).with_verify_keys(&other_public.replace('\n', "\\n")).is_ok());
    }

    #[test]
    fn tenant_and_platform_tokens_are_not_interchangeable() {
        let (private, _) = key_pair();
        let keys = signer(&private, None);
        let tenant_token = keys.issue(UserId::new_v7(), TenantId::new_v7(), Role::Owner).expect("issue");
        let operator = OperatorId::new_v7();
        let platform_token = keys.issue_platform(operator).expect("issue");
        assert_eq!(keys.verify_platform(&platform_token).map(|c| c.sub).ok(), Some(operator));
        assert!(keys.verify(&platform_token).is_err());
        assert!(keys.verify_platform(&tenant_token).is_err());
    }
}
