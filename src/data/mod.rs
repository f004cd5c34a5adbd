//! Bring your own tables: the adopted tables (`rowguard tables adopt`) served over
//! `/v1/data/{table}` without a line of Rust per table. `schema` reads what the catalog says
//! about them (the allowlist), `values` checks what a request sends against it, `sql` builds the
//! statements, `openapi` documents them. The handlers are `http::routes::data`; they reach the
//! database through the same tenant door as every other route.
//!
//! The service keeps one `Schema` snapshot and reads it again when `tables adopt` or
//! `migrate --dir` says something changed (NOTIFY `rowguard_tables_changed`), when the listener
//! reconnects, when a statement finds the table no longer as the snapshot describes it, and
//! every minute (for changes made by hand, which nobody announces).

pub mod openapi;
pub mod schema;
pub mod sql;
pub mod values;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use schema::{Column, Scalar, Schema, Table};

use crate::db::Database;
use crate::db::listen::Feed;

/// The channel `tables adopt` and `migrate --dir` notify when adopted tables may have changed.
pub const CHANGED_CHANNEL: &str = "rowguard_tables_changed";

/// How often the tables are read again even when nothing announced a change.
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The current snapshot of the adopted tables, reloaded in the background on request.
pub struct Tables {
    current: RwLock<Arc<Schema>>,
    reload: tokio::sync::Notify,
    generations: AtomicU64,
}

impl Tables {
    /// No tables until the first load (tests and tools that serve no adopted table).
    pub fn empty() -> Arc<Tables> {
        Arc::new(Tables {
            current: RwLock::new(Arc::new(Schema::default())),
            reload: tokio::sync::Notify::new(),
            generations: AtomicU64::new(0),
        })
    }

    /// Load the adopted tables now, then keep them current: a task reloads whenever
    /// `request_reload` is called (by `feed` on every NOTIFY and reconnect, among others).
    pub async fn watch(db: Database) -> Result<Arc<Tables>, sqlx::Error> {
        let tables = Tables::empty();
        tables.load(&db).await?;
        // A backstop for changes nobody announced (DDL typed into psql): read again every minute.
        let ticker = Arc::clone(&tables);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(RELOAD_EVERY);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                ticker.request_reload();
            }
        });
        let reloader = Arc::clone(&tables);
        let reload_db = db.clone();
        tokio::spawn(async move {
            loop {
                reloader.reload.notified().await;
                match reloader.load(&reload_db).await {
                    Ok(()) => {}
                    // Shutting down.
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the adopted tables failed; retrying in a second");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        reloader.reload.notify_one();
                    }
                }
            }
        });
        Ok(tables)
    }

    async fn load(&self, db: &Database) -> Result<(), sqlx::Error> {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let schema = db.adopted_tables(generation).await?;
        tracing::debug!(tables = schema.tables.len(), generation, "adopted tables read");
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(schema);
        }
        Ok(())
    }

    /// The feed that reads the tables again on every NOTIFY and listener reconnect.
    pub fn feed(self: &Arc<Self>) -> Feed {
        let tables = Arc::clone(self);
        Feed::new(CHANGED_CHANNEL, move |_| tables.request_reload())
    }

    /// The adopted tables as last read.
    pub fn snapshot(&self) -> Arc<Schema> {
        self.current.read().map(|s| Arc::clone(&s)).unwrap_or_default()
    }

    /// Read the catalog again soon (coalesced: many requests, one reload).
    pub fn request_reload(&self) {
        self.reload.notify_one();
    }
}
