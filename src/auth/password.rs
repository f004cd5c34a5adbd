//! argon2id with the crate defaults (m = 19 MiB, t = 2, p = 1: OWASP's minimum). Hashing runs
//! on the blocking pool behind a semaphore (a budget), so a login flood neither stalls request
//! threads nor allocates 19 MiB per attempt without bound; tenant and platform logins have
//! budgets of their own (`with_budget`), and a check that cannot get a slot in time answers
//! "busy" instead of queueing without end.
//!
//! Users imported from Django (`rowguard import schemas`) arrive with Django's hashes: those
//! of every hasher Django ships but the insecure ones — `pbkdf2_sha256$` (its default),
//! `pbkdf2_sha1$`, `argon2$`, `bcrypt_sha256$`, `bcrypt$` and `scrypt$`. They verify here too,
//! and the caller re-hashes them with argon2id on the first successful login. Django's
//! unsalted and MD5 hashers are not accepted (such a user resets the password), nor is a hash
//! whose cost is beyond the bounds below: a damaged or hostile hash must not tie up a blocking
//! thread for minutes.

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
    /// not yet migrated hash exists. That window closes as users log in once. A hash that
    /// matches nothing without any work (Django's unusable `!…`, its MD5 or unsalted formats,
    /// anything unreadable) costs the decoy alone: exactly an unknown e-mail.
    pub async fn verify_detailed(&self, password: String, stored: Option<String>) -> Result<Verified, HashError> {
        let _slot = self.slot().await?;
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.to_string());
        let decoy = self.decoy_hash.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let outcome = verify_now(&password, &hash);
            if pays_decoy(&hash) {
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

/// Bounds for the other imported formats, far above Django's defaults (bcrypt cost 12;
/// scrypt N = 2^14, r = 8, p = 5: 16 MiB).
/// bcrypt cost 14 is about a second here (Django's 12 a quarter of one).
const MAX_BCRYPT_COST: u32 = 14;
/// scrypt's buffers: V (128·r·N bytes) and B (128·r·p), with a margin; r and p bounded too.
const MAX_SCRYPT_MEMORY: u64 = 64 << 20;
const MAX_SCRYPT_BLOCK_SIZE: u32 = 32;
const MAX_SCRYPT_PARALLELISM: u32 = 16;

/// Django's hashers verified here, by the name that prefixes their hashes, with the check of
/// what follows it (`argon2$` is handled with our own argon2 hashes, below).
type Check = fn(&str, &str) -> bool;
const DJANGO_CHECKS: [(&str, Check); 5] = [
    ("pbkdf2_sha256$", |password, rest| verify_django_pbkdf2(password, rest, 32, pbkdf2::pbkdf2_hmac::<sha2::Sha256>)),
    ("pbkdf2_sha1$", |password, rest| verify_django_pbkdf2(password, rest, 20, pbkdf2::pbkdf2_hmac::<sha1::Sha1>)),
    // The password's SHA-256, as lower-case hex, is what bcrypt saw (so no 72-byte limit).
    ("bcrypt_sha256$", |password, rest| {
        verify_bcrypt(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(password.as_bytes())), rest)
    }),
    ("bcrypt$", verify_bcrypt),
    ("scrypt$", verify_django_scrypt),
];

/// Whether checking `stored` must also pay one argon2id verification against the decoy, so
/// that it costs at least what an unknown e-mail costs: every hash but an argon2 PHC string of
/// ours, which costs exactly that by itself.
fn pays_decoy(stored: &str) -> bool {
    !stored.starts_with("$argon2")
}

/// An imported hash format that verifies (and is then replaced by argon2id).
#[cfg(test)]
fn is_legacy(stored: &str) -> bool {
    stored.starts_with("argon2$") || DJANGO_CHECKS.iter().any(|(prefix, _)| stored.starts_with(prefix))
}

/// Verify synchronously against any hash format we accept. Never on a request thread.
pub fn verify_now(password: &str, stored: &str) -> Verified {
    // Django's unusable password (`set_unusable_password`, imported as is): `!` and random
    // characters. Nothing matches it, whatever a hash parser would make of the rest.
    if stored.starts_with('!') {
        return Verified::No;
    }
    let django =
        DJANGO_CHECKS.iter().find_map(|(prefix, check)| stored.strip_prefix(prefix).map(|rest| check(password, rest)));
    if let Some(matched) = django {
        return if matched { Verified::NeedsRehash } else { Verified::No };
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

/// `<iterations>$<salt>$<base64(pbkdf2_hmac_<digest>(password, salt, iterations))>`, as
/// Django's PBKDF2PasswordHasher (SHA-256) and PBKDF2SHA1PasswordHasher write it. Anything
/// malformed simply does not match.
/// `digest_len`: Django derives exactly one digest's length; a longer expected hash would cost
/// a multiple of the iterations.
fn verify_django_pbkdf2(
    password: &str,
    rest: &str,
    digest_len: usize,
    derive: fn(&[u8], &[u8], u32, &mut [u8]),
) -> bool {
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
    if expected.is_empty() || expected.len() > digest_len {
        return false;
    }
    let mut derived = vec![0u8; expected.len()];
    derive(password.as_bytes(), salt.as_bytes(), iterations, &mut derived);
    bool::from(derived.ct_eq(&expected))
}

/// A bcrypt string (`$2b$<cost>$<salt and hash>`), as Django's bcrypt hashers store it after
/// their own prefix; refused above `MAX_BCRYPT_COST`.
fn verify_bcrypt(password: &str, hash: &str) -> bool {
    let cost = hash.split('$').nth(2).and_then(|c| c.parse::<u32>().ok());
    if cost.is_none_or(|c| c > MAX_BCRYPT_COST) {
        return false;
    }
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// `<N>$<salt>$<r>$<p>$<base64 hash>`, as Django's ScryptPasswordHasher writes it (64-byte
/// key). N must be a power of two; memory (128·r·N) and parallelism are bounded.
fn verify_django_scrypt(password: &str, rest: &str) -> bool {
    let parts: Vec<&str> = rest.split('$').collect();
    let [n, salt, r, p, encoded] = parts[..] else {
        return false;
    };
    let (Ok(n), Ok(r), Ok(p)) = (n.parse::<u64>(), r.parse::<u32>(), p.parse::<u32>()) else {
        return false;
    };
    if !n.is_power_of_two() || n < 2 || r == 0 || r > MAX_SCRYPT_BLOCK_SIZE || p == 0 || p > MAX_SCRYPT_PARALLELISM {
        return false;
    }
    let blocks = n.saturating_add(u64::from(p)).saturating_add(2);
    if 128u64.saturating_mul(u64::from(r)).saturating_mul(blocks) > MAX_SCRYPT_MEMORY {
        return false;
    }
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    if expected.len() < 10 || expected.len() > 64 {
        return false;
    }
    let Ok(params) = scrypt::Params::new(n.trailing_zeros() as u8, r, p, expected.len()) else {
        return false;
    };
    let mut derived = vec![0u8; expected.len()];
    if scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut derived).is_err() {
        return false;
    }
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

    /// What costs nothing to refuse (unusable, MD5, unreadable) pays the decoy, so it takes an
    /// unknown e-mail's time; legacy hashes pay it on top of their own work; ours pay nothing
    /// more, since checking them is one argon2id verification already.
    #[test]
    fn hashes_that_refuse_for_free_pay_the_decoy() {
        for stored in
            ["!unusable", "md5$TDbnbLagFKHwJx2llWfzpu$ae7198da535c9f579ddfc546704ca5ee", "", "junk", DJANGO_PBKDF2]
        {
            assert!(pays_decoy(stored), "{stored}");
        }
        let ours = hash_now("correct horse").expect("hash");
        assert!(!pays_decoy(&ours), "{ours}");
    }

    /// Hashes made by Django 5.2 itself (`PBKDF2SHA1PasswordHasher().encode(...,
    /// iterations=1000)`, the bcrypt hashers with `rounds = 4`, `ScryptPasswordHasher().encode(...,
    /// n=1024, r=8, p=2)`) for the password below; low costs so the test is quick.
    const DJANGO_PASSWORD: &str = "correct horse \u{fc}n\u{ef}code";
    const DJANGO_OTHER_HASHERS: [&str; 4] = [
        "pbkdf2_sha1$1000$seasalt$I7rtQjLcQDkgsiL4UlaTLfdWlh8=",
        "bcrypt_sha256$$2b$04$vyzG1ALzvjNCJK4Z9r04KuFgt2HhroVP/DVizHQUp75tljyFC7bg2",
        "bcrypt$$2b$04$RjblwherTPtSFwuqXZ/Ee.hFcrnXSH47HO3ZyPkHWWsk8ZXICUQc.",
        "scrypt$1024$seasalt$8$2$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
    ];

    #[test]
    fn djangos_other_shipped_hashers_verify_and_ask_for_a_rehash() {
        for stored in DJANGO_OTHER_HASHERS {
            assert!(is_legacy(stored), "{stored}");
            assert_eq!(verify_now(DJANGO_PASSWORD, stored), Verified::NeedsRehash, "{stored}");
            assert_eq!(verify_now("correct horse unicode", stored), Verified::No, "{stored}");
        }
        // bcrypt_sha256 hashes the password first, so past bcrypt's 72 bytes every byte counts
        // (Django: `"x" * 100`).
        let long = "bcrypt_sha256$$2b$04$tPRtfJsooQ7u5OjyjqC1quOrdYHp7XJXLMxBBQ4PWroDpT7EZlolS";
        assert_eq!(verify_now(&"x".repeat(100), long), Verified::NeedsRehash);
        assert_eq!(verify_now(&"x".repeat(99), long), Verified::No);
        assert_eq!(verify_now(&"x".repeat(101), long), Verified::No);
    }

    #[test]
    fn other_hashers_out_of_bounds_or_malformed_match_nothing() {
        for stored in [
            // Costs beyond the bounds: refused before any work.
            "bcrypt$$2b$31$RjblwherTPtSFwuqXZ/Ee.hFcrnXSH47HO3ZyPkHWWsk8ZXICUQc.",
            "scrypt$1048576$seasalt$8$2$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
            "scrypt$1024$seasalt$8$99$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
            "pbkdf2_sha1$10000001$seasalt$I7rtQjLcQDkgsiL4UlaTLfdWlh8=",
            "scrypt$2$seasalt$262144$16$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
            "scrypt$1024$seasalt$64$2$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
            "bcrypt$$2b$15$RjblwherTPtSFwuqXZ/Ee.hFcrnXSH47HO3ZyPkHWWsk8ZXICUQc.",
            // A pbkdf2 hash longer than its digest (4x the work for SHA-1's 20 bytes).
            "pbkdf2_sha1$1000$seasalt$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJw==",
            // Malformed.
            "scrypt$1000$seasalt$8$2$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
            "scrypt$1024$seasalt$8$2",
            "scrypt$1024$seasalt$8$2$not base64",
            "bcrypt_sha256$$2b$xx$vyzG1ALzvjNCJK4Z9r04KuFgt2HhroVP/DVizHQUp75tljyFC7bg2",
            "bcrypt$garbage",
            "pbkdf2_sha1$1000$seasalt",
            // Django's MD5 hasher: not accepted at all (the user resets the password).
            "md5$TDbnbLagFKHwJx2llWfzpu$ae7198da535c9f579ddfc546704ca5ee",
        ] {
            assert_eq!(verify_now(DJANGO_PASSWORD, stored), Verified::No, "{stored}");
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
