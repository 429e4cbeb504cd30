//! Plumbing shared by pods, routers, probes and the load generator: an accept loop that can
//! drain, pooled keep-alive clients, and small helpers. Everything is plain hyper because the
//! router and pods sit on the hot path of every simulated request and CPU is budgeted.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Client for requests whose body we build ourselves (probes, readiness checks, load).
pub(crate) type PlainClient = Client<HttpConnector, Full<Bytes>>;
/// Client the router forwards incoming requests with, body streamed through untouched.
pub(crate) type ProxyClient = Client<HttpConnector, Incoming>;

/// Idle pooled connections are dropped by the client, never by the servers (which have no idle
/// timeout), so a request never lands on a connection the server is closing.
const POOL_IDLE: Duration = Duration::from_secs(20);

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    // Nagle plus delayed ACKs adds ~40 ms to small loopback exchanges.
    c.set_nodelay(true);
    c
}

pub(crate) fn plain_client() -> PlainClient {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE).pool_timer(TokioTimer::new()).build(connector())
}

pub(crate) fn proxy_client() -> ProxyClient {
    Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE).pool_timer(TokioTimer::new()).build(connector())
}

/// Binds synchronously so pods can be created while holding the workload's lock; the socket
/// is registered with the cluster's runtime, whichever runtime the caller is on.
pub(crate) fn bind_loopback(rt: &Handle) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let _context = rt.enter();
    TcpListener::from_std(listener)
}

/// Serves HTTP/1.1 until `stop` turns true (or its sender goes away): then stops accepting and
/// lets every connection finish the request it is answering before closing. Connections live
/// in a `JoinSet` owned by this future, so aborting the task closes them all at once.
pub(crate) async fn serve<F, Fut, B>(listener: TcpListener, handler: F, mut stop: watch::Receiver<bool>)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conns = JoinSet::new();
    let conn_stop = stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let mut stop = conn_stop.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(None)
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = stopped(&mut stop) => {}
                    }
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Resolves once `stop` turns true or its sender is gone (the guard `wait_for` returns is not
/// `Send`, so it must not live in the caller's future).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    respond(status, "application/json", body)
}

/// FNV-1a: a stable hash for seeds and pod names (std's hasher is randomised per process).
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

thread_local! {
    static FAST_RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// A uniform draw in `0..bound` from a per-thread generator: routing decisions and reservoir
/// sampling need speed, not reproducibility.
pub(crate) fn fast_below(bound: u64) -> u64 {
    if bound <= 1 {
        return 0;
    }
    FAST_RNG.with(|r| r.borrow_mut().random_range(0..bound))
}
