//! JWT access tokens: EdDSA (Ed25519) only, with key ids so keys can rotate. `alg` is pinned
//! (a token naming any other algorithm is refused before its signature is looked at), and
//! `exp`, `iss` and `aud` are always checked.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Role, TenantId, UserId};

/// Bound on remembered verified tokens (about 0.5 KiB each).
const VERIFIED_CACHE_ENTRIES: usize = 20_000;

/// Audience of tokens that act inside one tenant. Platform (operator) tokens get another.
pub const TENANT_AUDIENCE: &str = "rowguard:tenant";

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
    verified: RwLock<HashMap<String, AccessClaims>>,
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    validation: Validation,
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
        if let Ok(pem) = fs::read_to_string(path) {
            return Self::from_pem(&pem, None, issuer, ttl);
        }
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
        let key = SigningKey::from_bytes(&seed);
        let pem = key.to_pkcs8_pem(Default::default()).map_err(|e| KeyError::Key(e.to_string()))?;
        let mut f = fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path)?;
        f.write_all(pem.as_bytes())?;
        Self::from_signing_key(&key, None, issuer, ttl)
    }

    fn from_signing_key(key: &SigningKey, kid: Option<&str>, issuer: &str, ttl: Duration) -> Result<JwtKeys, KeyError> {
        let der = key.to_pkcs8_der().map_err(|e| KeyError::Key(e.to_string()))?;
        let public = key.verifying_key().to_bytes();
        // Without an explicit id, name the key after its public half: stable across restarts.
        let kid = kid.map(str::to_string).unwrap_or_else(|| {
            let hex: String = public[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("ed25519-{hex}")
        });
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[TENANT_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(JwtKeys {
            verified: RwLock::new(HashMap::new()),
            verifying: HashMap::from([(kid.clone(), DecodingKey::from_ed_der(&public))]),
            signing_kid: kid,
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            validation,
            issuer: issuer.to_string(),
            ttl,
        })
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

    /// Verify signature, algorithm, key id, expiry, issuer and audience.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let now = unix_now();
        if let Ok(cache) = self.verified.read()
            && let Some(claims) = cache.get(token)
            && claims.exp > now
        {
            return Ok(claims.clone());
        }
        let claims = self.verify_uncached(token)?;
        if claims.exp > now
            && let Ok(mut cache) = self.verified.write()
        {
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.retain(|_, c| c.exp > now);
                if cache.len() >= VERIFIED_CACHE_ENTRIES {
                    cache.clear();
                }
            }
            cache.insert(token.to_string(), claims.clone());
        }
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let key = header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map(|data| data.claims).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::Base64(_) => {
                TokenError::Malformed
            }
            _ => TokenError::Invalid,
        })
    }
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
        fs::create_dir_all(&dir).expect("dir");
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
        let _ = fs::remove_dir_all(&dir);
    }
}
