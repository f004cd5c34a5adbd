//! argon2id with the crate defaults (m = 19 MiB, t = 2, p = 1: OWASP's minimum). Hashing runs
//! on the blocking pool behind a semaphore (a budget), so a login flood neither stalls request
//! threads nor allocates 19 MiB per attempt without bound; tenant and platform logins have
//! budgets of their own (`with_budget`), and a check that cannot get a slot in time answers
//! "busy" instead of queueing without end.
//!
//! Users imported from Django (`rowguard import schemas`) arrive with Django's hashes:
//! `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>` and `argon2$argon2id$…`. They verify
//! here too, and the caller re-hashes them with argon2id on the first successful login.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// How long a check waits for a slot (`QUEUE_WAIT`; shorter in tests).
    queue_wait: std::time::Duration,
    /// Verified against when the e-mail is unknown, so that costs what a wrong password costs.
    decoy_hash: Arc<str>,
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot of this budget stayed taken for `QUEUE_WAIT`: a flood; try again shortly.
    #[error("password hashing is busy")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// How long a password check waits for a slot before it answers busy (503): long enough for a
/// burst of honest logins to get through, short enough that a flood cannot pile up requests
/// (each holding its body and a task) behind the semaphore.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl PasswordHasher {
    /// `max_concurrent` hashes at once (each holds 19 MiB while it runs).
    pub fn new(max_concurrent: usize) -> Result<PasswordHasher, HashError> {
        let decoy = hash_now("decoy password that no account has")?;
        Ok(PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_wait: QUEUE_WAIT,
            decoy_hash: decoy.into(),
        })
    }

    /// A hasher with a budget of its own (`max_concurrent` hashes at once), sharing the decoy.
    pub fn with_budget(&self, max_concurrent: usize) -> PasswordHasher {
        PasswordHasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queue_wait: self.queue_wait,
            decoy_hash: Arc::clone(&self.decoy_hash),
        }
    }

    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HashError> {
        match tokio::time::timeout(self.queue_wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(HashError::Failed(closed.to_string())),
            Err(_) => Err(HashError::Busy),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let _slot = self.slot().await?;
        tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|e| HashError::Failed(e.to_string()))?
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown account) it checks
    /// against the decoy and answers false, in the same time as a wrong password.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        Ok(self.verify_detailed(password, stored).await? != Verified::No)
    }

    /// As `verify`, telling a match on an argon2id hash of ours apart from a match on an
    /// imported legacy hash, which the caller should replace (`Verified::NeedsRehash`).
    ///
    /// Timing: an unknown account costs one argon2id verification, as does a wrong password
    /// for an argon2id hash. A legacy hash costs its own work (PBKDF2 at the iterations it was
    /// made with) PLUS the decoy argon2id verification, so it is never cheaper than an
    /// unknown e-mail; it can be slower, which tells a timing attacker that an account with a
    /// not yet migrated hash exists. That window closes as users log in once.
    pub async fn verify_detailed(&self, password: String, stored: Option<String>) -> Result<Verified, HashError> {
        let _slot = self.slot().await?;
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.to_string());
        let decoy = self.decoy_hash.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = verify_now(&password, &hash);
            if is_legacy(&hash) {
                // Pay the cost of an unknown e-mail too (see above); the answer is ignored.
                let _ = Argon2::default().verify_password(password.as_bytes(), &*decoy);
            }
            outcome
        })
        .await
        .unwrap_or(Verified::No);
        Ok(if known { outcome } else { Verified::No })
    }
}

/// How a password matched its stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    /// An argon2id hash made by this service.
    Yes,
    /// An imported (Django) hash: correct, but it should be replaced with argon2id now.
    NeedsRehash,
}

/// Above this, a PBKDF2 hash is refused rather than computed: Django's default is around a
/// million (5.2), and a damaged or hostile hash must not tie up a blocking thread for minutes.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

fn is_legacy(stored: &str) -> bool {
    stored.starts_with("pbkdf2_sha256$") || stored.starts_with("argon2$")
}

/// Verify synchronously against any hash format we accept. Never on a request thread.
pub fn verify_now(password: &str, stored: &str) -> Verified {
    // Django's unusable password (`set_unusable_password`, imported as is): `!` and random
    // characters. Nothing matches it, whatever a hash parser would make of the rest.
    if stored.starts_with('!') {
        return Verified::No;
    }
    if let Some(rest) = stored.strip_prefix("pbkdf2_sha256$") {
        return if verify_django_pbkdf2(password, rest) { Verified::NeedsRehash } else { Verified::No };
    }
    // Django's Argon2PasswordHasher stores "argon2" followed by argon2-cffi's PHC string
    // (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), which the argon2 crate reads as is.
    if let Some(phc) = stored.strip_prefix("argon2$") {
        let phc = format!("${phc}");
        return match Argon2::default().verify_password(password.as_bytes(), phc.as_str()) {
            Ok(()) => Verified::NeedsRehash,
            Err(_) => Verified::No,
        };
    }
    match Argon2::default().verify_password(password.as_bytes(), stored) {
        Ok(()) => Verified::Yes,
        Err(_) => Verified::No,
    }
}

/// `<iterations>$<salt>$<base64(pbkdf2_hmac_sha256(password, salt, iterations))>`, as
/// Django's PBKDF2PasswordHasher writes it. Anything malformed simply does not match.
fn verify_django_pbkdf2(password: &str, rest: &str) -> bool {
    let mut parts = rest.splitn(3, '$');
    let (Some(iterations), Some(salt), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        return false;
    };
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return false;
    }
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    if expected.is_empty() || expected.len() > 64 {
        return false;
    }
    let mut derived = vec![0u8; expected.len()];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    bool::from(derived.ct_eq(&expected))
}

/// Hash synchronously: for the CLI and for startup, never on a request thread.
pub fn hash_now(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let hasher = PasswordHasher::new(2).expect("hasher");
        let hash = hasher.hash("correct horse".into()).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse".into(), Some(hash.clone())).await.expect("verify"));
        assert!(!hasher.verify("wrong horse".into(), Some(hash)).await.expect("verify"));
        assert!(!hasher.verify("decoy password that no account has".into(), None).await.expect("verify"));
    }

    #[tokio::test]
    async fn budgets_are_separate_and_a_full_one_answers_busy() {
        let mut tenant = PasswordHasher::new(1).expect("hasher");
        tenant.queue_wait = std::time::Duration::from_millis(200);
        let platform = tenant.with_budget(1);
        // The platform budget's only slot is taken (a flood in progress) ...
        let _held = platform.permits.acquire().await.expect("permit");
        // ... tenant checks still run at once ...
        let started = std::time::Instant::now();
        assert!(!tenant.verify("x".into(), None).await.expect("tenant budget is free"));
        assert!(started.elapsed() < tenant.queue_wait);
        // ... and a platform check gives up with Busy rather than queueing forever.
        let busy = platform.verify("x".into(), None).await;
        assert!(matches!(busy, Err(HashError::Busy)), "{busy:?}");
    }

    /// A hash in Django's format, computed outside Rust the way Django's PBKDF2PasswordHasher
    /// does: `base64(hashlib.pbkdf2_hmac("sha256", b"correct horse", b"seasalt", 1000))`.
    const DJANGO_PBKDF2: &str = "pbkdf2_sha256$1000$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=";

    #[test]
    fn django_pbkdf2_hashes_verify_and_ask_for_a_rehash() {
        assert_eq!(verify_now("correct horse", DJANGO_PBKDF2), Verified::NeedsRehash);
        assert_eq!(verify_now("wrong horse", DJANGO_PBKDF2), Verified::No);
        for broken in [
            "pbkdf2_sha256$1000$seasalt",
            "pbkdf2_sha256$x$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=",
            "pbkdf2_sha256$0$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=",
            "pbkdf2_sha256$1000$seasalt$not base64",
            "pbkdf2_sha256$99999999999$seasalt$mQnueSakb748zqBAC1tmWVZsZbi2zPGZarEzTGdfmso=",
            "!unusable",
            "",
        ] {
            assert_eq!(verify_now("correct horse", broken), Verified::No, "{broken}");
        }
    }

    #[test]
    fn django_argon2_hashes_verify_and_ask_for_a_rehash() {
        let ours = hash_now("correct horse").expect("hash");
        let django = format!("argon2{ours}");
        assert_eq!(verify_now("correct horse", &django), Verified::NeedsRehash);
        assert_eq!(verify_now("wrong horse", &django), Verified::No);
        assert_eq!(verify_now("correct horse", &ours), Verified::Yes);
    }
}
