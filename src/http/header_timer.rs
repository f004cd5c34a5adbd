//! The timer behind hyper's header read timeout: one tokio sleep per connection, re-armed
//! only when it must fire earlier, instead of a new registered sleep for every request.
//!
//! Why: hyper asks its timer for a fresh sleep each time it starts reading a request head and
//! drops it once the head is in. With hyper-util's `TokioTimer` that is a registration and a
//! cancellation in tokio's timer wheel per request, both under the wheel's lock; measured in
//! A/B on get-by-id it cost 2–3% of throughput (the budget for the whole hardening was 3%).
//! Here a connection keeps one tokio `Sleep`. A deadline at or after the armed one leaves it
//! as it is (deadlines only move forward on a kept-alive connection); when the armed sleep
//! fires before a waiting head's own deadline, that head's sleep re-arms it for its deadline.
//! So a connection touches the wheel about once per timeout period, not twice per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// A timer for one connection's HTTP/1 builder.
#[derive(Clone, Default)]
pub struct ConnectionTimer {
    armed: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl ConnectionTimer {
    pub fn new() -> ConnectionTimer {
        ConnectionTimer::default()
    }
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(HeadDeadline { deadline, armed: Arc::clone(&self.armed) })
    }
}

/// One request head's deadline, woken by the connection's shared sleep.
struct HeadDeadline {
    deadline: Instant,
    armed: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for HeadDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        // Only this connection's task polls it: the lock is never contended. A poisoned lock
        // means a panic mid-poll elsewhere; the head then simply has no deadline.
        let Ok(mut armed) = self.armed.lock() else { return Poll::Pending };
        let sleep = armed.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline); // must fire earlier than it would
        }
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // It fired for an earlier deadline; ours is later: re-arm for ours.
                Poll::Ready(()) if Instant::now() < self.deadline => sleep.as_mut().reset(deadline),
                Poll::Ready(()) => return Poll::Ready(()),
            }
        }
    }
}

impl Sleep for HeadDeadline {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_deadline_fires_at_its_own_time_on_one_shared_sleep() {
        let timer = ConnectionTimer::new();
        let started = Instant::now();
        // An early deadline first, then a later one re-arms the shared sleep after it fired.
        timer.sleep(Duration::from_millis(30)).await;
        let first = started.elapsed();
        timer.sleep(Duration::from_millis(80)).await;
        let second = started.elapsed();
        assert!(first >= Duration::from_millis(30) && first < Duration::from_millis(80), "{first:?}");
        assert!(second >= Duration::from_millis(110), "{second:?}");
        // A later deadline armed first does not delay an earlier one asked for after it.
        let late = tokio::time::timeout(Duration::from_millis(5), timer.sleep(Duration::from_secs(60))).await;
        assert!(late.is_err(), "a 60 s deadline fired at once");
        let before = Instant::now();
        timer.sleep(Duration::from_millis(20)).await;
        assert!(before.elapsed() < Duration::from_secs(1), "{:?}", before.elapsed());
    }
}
