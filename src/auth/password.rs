//! argon2id with the crate defaults (m = 19 MiB, t = 2, p = 1: OWASP's minimum). Hashing runs
//! on the blocking pool behind a semaphore, so a login flood neither stalls request threads
//! nor allocates 19 MiB per attempt without bound.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against when the e-mail is unknown, so that costs what a wrong password costs.
    decoy_hash: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl PasswordHasher {
    /// `max_concurrent` hashes at once (each holds 19 MiB while it runs).
    pub fn new(max_concurrent: usize) -> Result<PasswordHasher, HashError> {
        let decoy = hash_now("decoy password that no account has")?;
        Ok(PasswordHasher { permits: Arc::new(Semaphore::new(max_concurrent.max(1))), decoy_hash: decoy.into() })
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _permit = self.permits.acquire().await.map_err(|e| HashError(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|e| HashError(e.to_string()))?
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown account) it checks
    /// against the decoy and answers false, in the same time as a wrong password.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.to_string());
        let matched = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .unwrap_or(false);
        matched && known
    }
}

/// Hash synchronously: for the CLI and for startup, never on a request thread.
pub fn hash_now(password: &str) -> Result<String, HashError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| HashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = PasswordHasher::new(2).expect("hasher");
        let hash = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse".into(), Some(hash.clone())).await);
        assert!(!hasher.verify("wrong horse".into(), Some(hash)).await);
        assert!(!hasher.verify("decoy password that no account has".into(), None).await);
    }
}
