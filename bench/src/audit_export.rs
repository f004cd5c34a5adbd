//! The audit export's memory: one tenant with N audit events (made by N contact inserts, which
//! the audit trigger records), then `GET /v1/audit-events/export` read to the end while the
//! service's resident memory is sampled. A streamed export stays flat whatever N is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::Request;
use rowguard::domain::Role;
use rowguard::platform::PlatformConn;
use uuid::Uuid;

use crate::fixture::{Fixture, create_one};
use crate::service::Service;

pub async fn measure(admin_url: &str, svc: &Service, fixture: &Arc<Fixture>, events: usize) -> anyhow::Result<()> {
    println!("\n## Audit export memory");
    let started = Instant::now();
    let mut platform = PlatformConn::connect(admin_url).await?;
    let tenant = create_one(&mut platform, 99_999, &fixture.owner_hash, 0).await?;
    for chunk in (0..events).collect::<Vec<_>>().chunks(10_000) {
        let ids: Vec<Uuid> = chunk.iter().map(|_| Uuid::now_v7()).collect();
        let mut tx = platform.tenant_tx(tenant.id).await?;
        sqlx::query(
            "INSERT INTO contacts (tenant_id, id, name, email)
             SELECT $1, id, 'Audited ' || n, 'a' || n || '@example.com' FROM unnest($2::uuid[]) WITH ORDINALITY AS u(id, n)",
        )
        .bind(tenant.id)
        .bind(&ids)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
    }
    println!("{events} audit events written in one tenant in {:.1} s", started.elapsed().as_secs_f64());

    let token = fixture.keys.issue(tenant.owner, tenant.id, Role::Owner)?;
    let before = svc.rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), svc.pid());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find(|l| l.starts_with("VmRSS:"))
                            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                    })
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let stream = tokio::net::TcpStream::connect(svc.addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request: Request<Full<bytes::Bytes>> = Request::builder()
        .uri("/v1/audit-events/export")
        .header("host", format!("{}.localhost", tenant.slug))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())?;
    let exporting = Instant::now();
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes += data.len();
            lines += data.iter().filter(|b| **b == b'\n').count();
        }
    }
    let took = exporting.elapsed();
    done.store(true, Ordering::SeqCst);
    let _ = sampler.await;
    let peak = peak.load(Ordering::SeqCst);
    println!(
        "export: HTTP {status}, {lines} lines, {:.1} MiB in {:.1} s; service RSS {:.1} MiB before, {:.1} MiB at most during (+{:.1} MiB)",
        bytes as f64 / 1048576.0,
        took.as_secs_f64(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0
    );
    Ok(())
}
