//! The one LISTEN loop behind every change feed: a dedicated connection LISTENs on every feed's
//! channel and hands each notification to its feed; when the connection is lost (or first
//! made) every feed hears that notifications may have been missed, so caches drop everything.
//! One connection for all of them, held for good: its own, not one of the request pool's.

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

/// One channel and what to do with what arrives on it.
pub struct Feed {
    channel: &'static str,
    on_notice: Box<dyn Fn(Notice<'_>) + Send + Sync>,
}

impl Feed {
    pub fn new(channel: &'static str, on_notice: impl Fn(Notice<'_>) + Send + Sync + 'static) -> Feed {
        Feed { channel, on_notice: Box::new(on_notice) }
    }
}

impl Database {
    /// LISTEN on every feed's channel until the pool closes, calling each feed for its
    /// notifications and every feed with `MayHaveMissed` on every (re)connect and loss;
    /// retries each second.
    pub async fn listen(&self, feeds: Vec<Feed>) {
        let channels: Vec<&str> = feeds.iter().map(|f| f.channel).collect();
        let missed = || feeds.iter().for_each(|f| (f.on_notice)(Notice::MayHaveMissed));
        loop {
            if self.background.is_closed() {
                return;
            }
            match PgListener::connect_with(&self.background).await {
                Ok(mut listener) => {
                    if listener.listen_all(channels.iter().copied()).await.is_ok() {
                        missed();
                        let mut stream = listener.into_stream();
                        while let Some(note) = stream.next().await {
                            let Ok(note) = note else { break };
                            if let Some(feed) = feeds.iter().find(|f| f.channel == note.channel()) {
                                (feed.on_notice)(Notice::Payload(note.payload()));
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, ?channels, "change listener cannot connect; retrying"),
            }
            missed();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}
