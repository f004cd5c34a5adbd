//! The one LISTEN loop behind every change feed: a dedicated connection of the pool LISTENs on
//! a channel and hands each notification on; when the connection is lost (or first made) the
//! handler hears that notifications may have been missed, so caches drop everything.

use futures_util::StreamExt;
use sqlx::postgres::PgListener;

use super::Database;

/// What a change feed hands its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// A notification's payload.
    Payload(&'a str),
    /// The listener (re)connected, or lost its connection: changes may have been missed.
    MayHaveMissed,
}

impl Database {
    /// LISTEN on `channel` until the pool closes, calling `on_notice` for every notification
    /// and with `MayHaveMissed` on every (re)connect and loss; retries each second.
    pub async fn listen(&self, channel: &'static str, on_notice: impl Fn(Notice<'_>) + Send + 'static) {
        loop {
            if self.pool.is_closed() {
                return;
            }
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    if listener.listen(channel).await.is_ok() {
                        on_notice(Notice::MayHaveMissed);
                        let mut stream = listener.into_stream();
                        while let Some(note) = stream.next().await {
                            let Ok(note) = note else { break };
                            on_notice(Notice::Payload(note.payload()));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, channel, "change listener cannot connect; retrying"),
            }
            on_notice(Notice::MayHaveMissed);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
