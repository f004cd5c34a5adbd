//! The log's writer: lines are appended to a shared buffer (a lock and a copy: no system call,
//! no thread to wake) and written out in batches, by a thread of its own every
//! `FLUSH_EVERY`, or by the writing thread itself once `FLUSH_AT` bytes wait. A line is thus on
//! stderr at most `FLUSH_EVERY` after it was logged; none is dropped while the process runs and
//! stops normally (the guard writes what is pending). A process killed outright (SIGKILL, an
//! abort) loses what was pending: at most the last `FLUSH_EVERY` of lines.
//!
//! Why not tracing-appender's non-blocking writer: it hands each line to its worker over a
//! channel, waking the worker for nearly every line. Measured on get-by-id with the access line
//! on, that cost as much as writing to stderr directly (BENCHMARKS.md, "the access line").

use std::io::Write;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const FLUSH_AT: usize = 64 * 1024;

type Sink = Arc<Mutex<dyn Write + Send>>;

/// The buffer and where it goes.
struct Shared {
    pending: Mutex<Vec<u8>>,
    sink: Sink,
}

/// Hands out writers (`tracing_subscriber::fmt::MakeWriter`) into the shared buffer.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Writes what is pending when dropped, and stops the flushing thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl BatchedStderr {
    pub fn start() -> std::io::Result<(BatchedStderr, FlushGuard)> {
        Self::start_with(Arc::new(Mutex::new(std::io::stderr())))
    }

    fn start_with(sink: Sink) -> std::io::Result<(BatchedStderr, FlushGuard)> {
        let shared = Arc::new(Shared { pending: Mutex::new(Vec::with_capacity(FLUSH_AT)), sink });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let flushed = Arc::clone(&shared);
        let flusher = std::thread::Builder::new().name("rowguard-log".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(FLUSH_EVERY) {
                flushed.flush();
            }
        })?;
        let guard = FlushGuard { shared: Arc::clone(&shared), stop: Some(stop), flusher: Some(flusher) };
        Ok((BatchedStderr { shared }, guard))
    }
}

impl Shared {
    /// Write out what is pending. Taken out of the lock first: writers never wait on the sink.
    fn flush(&self) {
        let batch = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_AT)),
            _ => return,
        };
        // Nowhere to report a failure to write the log: the batch is lost, the service goes on.
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        }
    }
}

impl Write for BatchedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = match self.shared.pending.lock() {
            Ok(mut pending) => {
                pending.extend_from_slice(line);
                pending.len() >= FLUSH_AT
            }
            // A writer panicked while holding the lock: write this line straight through.
            Err(_) => return std::io::stderr().write(line),
        };
        if full {
            self.shared.flush();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> BatchedStderr {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_in_order_batched_and_all_of_them_by_the_guard() {
        let memory = Memory::default();
        let written = || memory.0.lock().map(|m| m.clone()).unwrap_or_default();
        let (mut writer, guard) = BatchedStderr::start_with(Arc::new(Mutex::new(memory.clone()))).expect("start");
        writer.write_all(b"one\n").expect("write");
        writer.write_all(b"two\n").expect("write");
        std::thread::sleep(FLUSH_EVERY * 4);
        assert_eq!(written(), b"one\ntwo\n", "written within FLUSH_EVERY");
        let big = vec![b'x'; FLUSH_AT];
        writer.write_all(&big).expect("write");
        assert_eq!(written().len(), 8 + FLUSH_AT, "written at once past FLUSH_AT");
        writer.write_all(b"last\n").expect("write");
        drop(guard);
        assert!(written().ends_with(b"xlast\n"), "the guard writes what is pending");
    }
}
