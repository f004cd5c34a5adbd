//! Sending one webhook delivery: a signed POST to the subscriber's URL through a client whose
//! resolver refuses non-public addresses (outside development), with a deadline, and the
//! outcome as the delivery log records it. Redirects are not followed (a 3xx is a failure).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;

use super::signing;
use super::target::{self, is_public};

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// Resolves a receiver's host name and keeps only the addresses a webhook may reach.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_local: bool,
}

impl tower::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_local = self.allow_local;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| allow_local || is_public(a.ip())).collect();
            if allowed.is_empty() {
                let what = if found.is_empty() { "no address" } else { "no public address" };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("{} has {what}; webhooks may not target loopback, private or link-local networks", name),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// The HTTP client every delivery of this process goes through.
#[derive(Clone)]
pub struct Sender {
    client: Client<Connector, Full<Bytes>>,
    allow_local: bool,
    timeout: Duration,
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why it did not succeed, when it did not (a status outside 2xx included).
    pub error: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// One message to send.
pub struct Message<'a> {
    pub url: &'a str,
    pub message_id: uuid::Uuid,
    pub body: &'a str,
    pub secrets: &'a [&'a str],
}

impl Sender {
    pub fn new(allow_local: bool, timeout: Duration) -> Sender {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { allow_local });
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Sender { client, allow_local, timeout }
    }

    /// POST `message`, signed, within the timeout.
    pub async fn send(&self, message: &Message<'_>) -> Attempt {
        let started_at = chrono::Utc::now();
        let clock = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.post(message)).await;
        let (status, error) = match result {
            Err(_) => (None, Some(format!("no answer within {} ms", self.timeout.as_millis()))),
            Ok(Err(e)) => (None, Some(e)),
            Ok(Ok(status)) if (200..300).contains(&status) => (Some(status), None),
            Ok(Ok(status)) => (Some(status), Some(format!("the receiver answered {status}"))),
        };
        Attempt { started_at, duration: clock.elapsed(), status, error }
    }

    async fn post(&self, message: &Message<'_>) -> Result<u16, String> {
        // The rules that need no DNS, again at delivery (a literal address never reaches the
        // resolver); the resolver applies the rest to every address it would connect to.
        let url = target::parse(message.url, self.allow_local).map_err(|e| e.to_string())?;
        let id = format!("msg_{}", message.message_id.simple());
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature_header(message.secrets, &id, timestamp, message.body.as_bytes());
        let request = hyper::Request::post(url.as_str())
            .header("content-type", "application/json")
            .header("user-agent", concat!("rowguard-webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::copy_from_slice(message.body.as_bytes())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = self.client.request(request).await.map_err(describe)?;
        // The body is not read: the status is the answer. Dropping it closes the connection.
        Ok(response.status().as_u16())
    }
}

/// The innermost cause of a client error, which says what actually went wrong (refused,
/// reset, a certificate, a refused address).
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}
