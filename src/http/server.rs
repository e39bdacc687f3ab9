//! The HTTP/1.1 server: one accept loop, one task per connection, with the
//! limits of `server.*`.
//!
//! - A connection must deliver a complete request head within
//!   `header_read_timeout`, counted from its start or, when kept alive, from
//!   the first byte of the next request.
//! - A kept-alive connection with no request in progress is closed after
//!   `idle_timeout`; so is one whose client does not take its answer.
//! - At most `max_connections` are open. Past it, a new connection takes the
//!   place of the one idle (or stuck sending its head) the longest; when every
//!   connection is busy with a request, new ones wait in the listen backlog.
//! - On shutdown the listener is dropped (new connections are refused),
//!   connections still waiting for a head close at once, in-flight requests
//!   finish and then their connection closes.
//!
//! The request-body deadline (`body_read_timeout`) is enforced where a body is
//! read (the webhook handler): only it knows when it wants the body.
//!
//! Each connection's activity is tracked in one place: bytes read (by the
//! socket wrapper), requests started (by the service) and finished (when
//! hyper drops the response body, i.e. after writing it).

use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::Router;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers) accepted; hyper answers
/// 431 and closes the connection above it. Alertmanager sends well under 1 KiB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The connection limits of `server.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Why the server closed a connection itself (the metric's label values live with it).
pub use crate::metrics::CLOSE_REASONS;

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains.
/// Returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let live = Arc::new(Live::default());
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    // Our own watchdog enforces the head deadline (hyper's would also close
    // idle kept-alive connections after the same time).
    builder
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES);
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(error = %e, "Cannot accept a connection");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match make_room(&permits, &live, &shutdown).await {
                Some(permit) => permit,
                None => break,
            },
        };
        next_id += 1;
        let activity = Arc::new(Activity::new());
        live.insert(next_id, activity.clone());
        // Decremented when the Connection drops, even if its task never ran.
        metrics.open_connections.inc();
        let task = Connection {
            id: next_id,
            activity,
            live: live.clone(),
            limits,
            metrics: metrics.clone(),
            _permit: permit,
        };
        connections.spawn(task.run(stream, builder.clone(), router.clone(), shutdown.clone()));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// At the connection cap: asks the longest-idle connection to close and
/// waits for a free slot. Waits for a busy connection to finish when none is
/// idle. `None` when shutdown began meanwhile.
async fn make_room(
    permits: &Arc<Semaphore>,
    live: &Live,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let evicted = live.evict_longest_idle();
        if !evicted {
            tracing::debug!("Connection limit reached with every connection busy; waiting");
        }
        tokio::select! {
            permit = permits.clone().acquire_owned() => return permit.ok(),
            () = shutdown.cancelled() => return None,
            // The chosen connection may have started a request meanwhile: choose again.
            () = tokio::time::sleep(Duration::from_millis(100)), if evicted => {}
        }
    }
}

/// The open connections, for eviction.
#[derive(Default)]
struct Live(Mutex<HashMap<u64, Arc<Activity>>>);

impl Live {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        // The map stays consistent even if a holder panicked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, id: u64, activity: Arc<Activity>) {
        self.lock().insert(id, activity);
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Signals the connection without a request in progress whose idle or
    /// head-reading period began first. False when every connection is busy.
    fn evict_longest_idle(&self) -> bool {
        let oldest = self
            .lock()
            .values()
            .filter_map(|a| a.idle_since().map(|since| (since, a.clone())))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, activity)) => {
                activity.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What one connection is doing.
///
/// Its changes wake nobody: the connection's timer is set to the earliest
/// instant any deadline could fall, given what is known when it is set
/// ([`Activity::next_check`]); every later change only moves deadlines
/// further out, so when the timer fires the deadline is read again and the
/// timer set anew. A busy connection pays no wake-up per request.
struct Activity {
    state: Mutex<ActivityState>,
    /// Poked by the accept loop at the connection cap.
    evict: Notify,
}

struct ActivityState {
    /// Requests whose head was read and whose response is not yet written.
    in_flight: usize,
    /// Since when the connection has had no request in progress.
    idle_since: Instant,
    /// When the head of the next request started to arrive (the connection's
    /// start, for its first request); `None` while only waiting.
    head_since: Option<Instant>,
    /// When the handler produced the response being written; `None` before.
    responding_since: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: now,
                head_since: Some(now),
                responding_since: None,
            }),
            evict: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ActivityState> {
        // Plain counters and instants: consistent even after a panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived on the socket.
    fn on_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(Instant::now());
        }
    }

    /// A request head was read; the service runs.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.head_since = None;
        InFlight(self.clone())
    }

    /// The handler answered; the response is being written.
    fn begin_response(&self) {
        self.lock().responding_since = Some(Instant::now());
    }

    fn end_request(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.responding_since = None;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }

    /// No request in progress and the next head not complete (or not begun
    /// on a new connection).
    fn reading_head(&self) -> bool {
        let s = self.lock();
        s.in_flight == 0 && s.head_since.is_some()
    }

    /// When the idle or head-reading period began; `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0).then(|| s.head_since.unwrap_or(s.idle_since))
    }

    /// When to look at the deadline again: no deadline can fall before it,
    /// whatever happens from `now` on. A head that starts later is due no
    /// sooner than `now + header_read_timeout`, an answer that starts later
    /// no sooner than `now + idle_timeout`; a deadline already known is exact.
    fn next_check(&self, limits: &Limits, now: Instant) -> Instant {
        let s = self.lock();
        if s.in_flight > 0 {
            return s.responding_since.unwrap_or(now) + limits.idle_timeout;
        }
        match s.head_since {
            Some(since) => since + limits.header_read_timeout,
            None => (s.idle_since + limits.idle_timeout).min(now + limits.header_read_timeout),
        }
    }

    /// The next deadline and the reason to close at it; `None` while a
    /// request is handled (its body and the store have their own limits).
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let s = self.lock();
        if s.in_flight > 0 {
            // A client that does not take its answer holds the connection
            // no longer than an idle one.
            return s
                .responding_since
                .map(|since| (since + limits.idle_timeout, "write_timeout"));
        }
        Some(match s.head_since {
            Some(since) => (since + limits.header_read_timeout, "header_timeout"),
            None => (s.idle_since + limits.idle_timeout, "idle_timeout"),
        })
    }
}

/// Held from a request's head to the end of its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// One accepted connection.
struct Connection {
    id: u64,
    activity: Arc<Activity>,
    live: Arc<Live>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Frees a slot under `max_connections` when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        builder: http1::Builder,
        router: Router,
        shutdown: CancellationToken,
    ) {
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: self.activity.clone(),
        });
        let activity = self.activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = activity.begin_request();
            let mut router = router.clone();
            async move {
                // Router is always ready (its poll_ready returns Ready), so
                // calling it without poll_ready is within the Service contract.
                let response =
                    tower_service::Service::call(&mut router, request.map(Body::new)).await;
                guard.0.begin_response();
                response.map(|r| {
                    r.map(|body| Guarded {
                        inner: body,
                        _guard: guard,
                    })
                })
            }
        });
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        // `now` is taken before the state is read: whatever changes after
        // the read happens at `now` or later (see Activity::next_check).
        let timer =
            tokio::time::sleep_until(self.activity.next_check(&self.limits, Instant::now()));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "Connection ended with an error");
                    }
                    break;
                }
                () = timer.as_mut() => {
                    let now = Instant::now();
                    if let Some((at, reason)) = self.activity.deadline(&self.limits) {
                        if at <= now {
                            // Dropping the connection mid-response (write_timeout) only
                            // loses an answer the client was not reading.
                            tracing::debug!(reason, "Closing connection");
                            self.metrics.connection_closed(reason);
                            break;
                        }
                    }
                    timer.as_mut().reset(self.activity.next_check(&self.limits, now));
                }
                () = self.activity.evict.notified() => {
                    if self.activity.idle_since().is_some() {
                        tracing::debug!("Closing the longest-idle connection to make room (server.max_connections)");
                        self.metrics.connection_closed("evicted");
                        break;
                    }
                }
                () = shutdown.cancelled(), if !draining => {
                    // A head still arriving (or none yet): nothing is owed, close now.
                    if self.activity.reading_head() {
                        break;
                    }
                    // Otherwise hyper closes once the response in progress
                    // (or the last one, still being flushed) is written.
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.live.remove(self.id);
        self.metrics.open_connections.dec();
    }
}

/// The socket, reporting reads to the connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that marks its request finished when hyper drops it
/// (after writing it, or when the connection dies).
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
