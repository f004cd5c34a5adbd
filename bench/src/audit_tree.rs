//! What the create workloads need around them for the audit log (issue 18): switching the
//! contacts' audit trigger off and on for the unaudited baseline (on this harness's own
//! throwaway cluster, as the superuser), and how long committed events waited to be sealed.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Enable or disable the contacts' row-change audit trigger.
pub async fn set_contacts_audit(admin_url: &str, on: bool) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let verb = if on { "ENABLE" } else { "DISABLE" };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER TABLE contacts {verb} TRIGGER audit_row_change")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// The newest event's seq now (the events a workload writes come after it).
pub async fn last_seq(admin_url: &str) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_events").fetch_one(&mut conn).await?;
    conn.close().await?;
    Ok(seq)
}

/// Wait until the service's sealer has sealed every event the fixture wrote, before anything
/// is measured: otherwise the first workload shares the machine with sealing 100,000 events
/// it did not write. Returns how long that took (for the report).
pub async fn fixture_sealed(admin_url: &str) -> anyhow::Result<Duration> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let (took, caught_up) = until_sealed(&mut conn, Duration::from_secs(600)).await?;
    conn.close().await?;
    anyhow::ensure!(caught_up, "the service had not sealed the fixture's events after {:.0} s", took.as_secs_f64());
    Ok(took)
}

/// Poll until no transaction's events wait to be sealed (true), or `limit` passed (false).
async fn until_sealed(conn: &mut PgConnection, limit: Duration) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_unsealed").fetch_one(&mut *conn).await?;
        if waiting == 0 || started.elapsed() > limit {
            return Ok((started.elapsed(), waiting == 0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait for the sealer to catch up, then the delay from each event (after `since`) to its
/// sealing: one line for the report.
pub async fn freshness(admin_url: &str, since: i64) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let (caught_up, done) = until_sealed(&mut conn, Duration::from_secs(60)).await?;
    let (events, p50, p99, max): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d)
           FROM (SELECT extract(epoch FROM l.sealed_at - e.occurred_at)::float8 * 1000 AS d
                   FROM audit_events e JOIN audit_tree_leaves l USING (tenant_id, seq)
                  WHERE e.seq > $1) s",
    )
    .bind(since)
    .fetch_one(&mut conn)
    .await?;
    let unsealed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e
          WHERE e.seq > $1 AND NOT EXISTS (SELECT FROM audit_tree_leaves l WHERE l.tenant_id = e.tenant_id AND l.seq = e.seq)",
    )
    .bind(since)
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(format!(
        "  sealing: {events} events sealed, {unsealed} not; event to sealed p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
         ({} {:.1} s after the workload)",
        p50.unwrap_or(0.0),
        p99.unwrap_or(0.0),
        max.unwrap_or(0.0),
        if done { "caught up" } else { "NOT caught up" },
        caught_up.as_secs_f64()
    ))
}
