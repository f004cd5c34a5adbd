//! Signed checkpoints: the service signs (tenant, last event, head hash, time) with an Ed25519
//! key the database never sees, so even someone who can rewrite the whole chain cannot make
//! an old checkpoint agree with a rewritten log.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;
use sqlx::PgConnection;

use crate::domain::TenantId;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub tenant_id: TenantId,
    pub seq: i64,
    #[serde(serialize_with = "as_hex")]
    pub head: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    #[serde(serialize_with = "as_hex")]
    pub signature: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
    /// The key's name in signed tree heads (C2SP notes) and the prefix of every tenant's log
    /// origin: `<base domain>/audit` (`named`).
    log_name: String,
}

impl AuditSigner {
    /// From a PKCS#8 PEM (production), or generated once into `path` (development).
    pub fn load(pem: Option<&str>, path: &Path) -> anyhow::Result<AuditSigner> {
        let key = match pem {
            Some(pem) => SigningKey::from_pkcs8_pem(pem).map_err(|e| anyhow::anyhow!("audit signing key: {e}"))?,
            None => {
                let pem = crate::key_file::read_or_create(path, crate::key_file::new_ed25519_pem)?;
                SigningKey::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("audit signing key: {e}"))?
            }
        };
        let key_id = format!("audit-ed25519-{}", &hex::encode(key.verifying_key().to_bytes())[..16]);
        Ok(AuditSigner { key, key_id, log_name: "rowguard/audit".into() })
    }

    /// Name the logs after the installation's base domain: `<base domain>/audit`.
    pub fn named(mut self, base_domain: &str) -> AuditSigner {
        let domain: String = base_domain.chars().filter(|c| !c.is_whitespace() && *c != '+').collect();
        if !domain.is_empty() {
            self.log_name = format!("{domain}/audit");
        }
        self
    }

    pub fn log_name(&self) -> &str {
        &self.log_name
    }

    /// Sign a note's text (a tree head) as `log_name`.
    pub fn sign_note(&self, text: &str) -> Result<String, super::note::NoteError> {
        super::note::sign(text, &self.log_name, &self.key)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The C2SP verifier key (`<name>+<key id>+<base64 key>`) auditors check heads with.
    pub fn verifier_key(&self) -> String {
        super::note::verifier_key(&self.log_name, &self.key.verifying_key())
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key auditors verify checkpoints with (hex, 32 bytes).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    fn message(tenant: TenantId, seq: i64, head: &[u8], signed_at: DateTime<Utc>) -> Vec<u8> {
        format!("rowguard-audit-checkpoint-v1|{tenant}|{seq}|{}|{}", hex::encode(head), signed_at.timestamp_micros())
            .into_bytes()
    }

    pub fn verifies(&self, c: &Checkpoint) -> bool {
        verify_with(&self.key.verifying_key(), c)
    }

    /// Sign the tenant's current head (if it moved since the last checkpoint) and store it.
    /// Runs inside a transaction that has set the tenant.
    pub async fn checkpoint(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
    ) -> Result<Option<Checkpoint>, sqlx::Error> {
        let head: Option<(i64, Vec<u8>)> =
            // FOR SHARE (so a concurrent retention purge cannot cut below the head signed here)
            // needs UPDATE on the heads, which the app role no longer has: the lock is taken
            // by a narrow definer function (sql/V17) that reads this tenant's head only.
            sqlx::query!(r#"SELECT seq AS "seq!", head AS "head!" FROM audit_head_locked($1)"#, tenant.0)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| (r.seq, r.head));
        let Some((seq, head)) = head.filter(|(seq, _)| *seq > 0) else { return Ok(None) };
        let done: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT FROM audit_checkpoints WHERE tenant_id = $1 AND seq = $2 AND key_id = $3) AS "done!""#,
            tenant.0,
            seq,
            &self.key_id
        )
        .fetch_one(&mut *conn)
        .await?;
        if done {
            return Ok(None);
        }
        // Microseconds, as the signed message and the database keep them.
        let signed_at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default();
        let signature = self.key.sign(&Self::message(tenant, seq, &head, signed_at)).to_bytes().to_vec();
        let checkpoint = Checkpoint { tenant_id: tenant, seq, head, signed_at, key_id: self.key_id.clone(), signature };
        sqlx::query!(
            "INSERT INTO audit_checkpoints (tenant_id, seq, head, signed_at, key_id, signature)
             VALUES ($1, $2, $3, $4, $5, $6)",
            checkpoint.tenant_id.0,
            checkpoint.seq,
            &checkpoint.head,
            checkpoint.signed_at,
            &checkpoint.key_id,
            &checkpoint.signature
        )
        .execute(&mut *conn)
        .await?;
        Ok(Some(checkpoint))
    }
}

/// Whether `c` carries a valid signature by `key`.
pub fn verify_with(key: &VerifyingKey, c: &Checkpoint) -> bool {
    let Ok(signature) = Signature::from_slice(&c.signature) else { return false };
    key.verify(&AuditSigner::message(c.tenant_id, c.seq, &c.head, c.signed_at), &signature).is_ok()
}

pub async fn list(conn: &mut PgConnection, tenant: TenantId) -> Result<Vec<Checkpoint>, sqlx::Error> {
    sqlx::query_as!(
        Checkpoint,
        r#"SELECT tenant_id AS "tenant_id: TenantId", seq, head, signed_at, key_id, signature FROM audit_checkpoints
          WHERE tenant_id = $1 ORDER BY seq DESC"#,
        tenant.0
    )
    .fetch_all(conn)
    .await
}
