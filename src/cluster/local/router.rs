//! The reverse proxy in front of a workload: the local stand-in for a service mesh. Each
//! request reads the current route table (an `Arc` swapped as a whole), so a routing change
//! applies to the very next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{COOKIE, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};

use super::flags::FLAG_HEADER_PREFIX;
use super::http::{ProxyClient, fast_below, respond};
use super::stats::{FlagStats, Stats, VersionStats};
use crate::cluster::{MatchKind, Routing};

pub(crate) type RouterBody = Either<Incoming, Full<Bytes>>;

const VERSION_HEADER: HeaderName = HeaderName::from_static("x-shipdeck-version");

/// Where one version's traffic goes right now.
struct VersionRoute {
    header: Option<HeaderValue>,
    pods: Vec<Authority>,
    next: AtomicUsize,
    stats: Arc<VersionStats>,
}

impl VersionRoute {
    fn next_pod(&self) -> Option<&Authority> {
        if self.pods.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pods.len();
        self.pods.get(i)
    }
}

enum Matcher {
    Header(HeaderName, String),
    Cookie(String, String),
}

impl Matcher {
    fn matches<B>(&self, req: &Request<B>) -> bool {
        match self {
            Matcher::Header(name, value) => {
                req.headers().get_all(name).iter().any(|v| v.as_bytes() == value.as_bytes())
            }
            Matcher::Cookie(name, value) => req.headers().get_all(COOKIE).iter().any(|h| {
                h.to_str().is_ok_and(|s| {
                    s.split(';').filter_map(|kv| kv.trim().split_once('=')).any(|(k, v)| k == name && v == value)
                })
            }),
        }
    }
}

/// An immutable snapshot of routing plus the ready pods of each routed version.
#[derive(Default)]
pub(crate) struct RouteTable {
    /// Cumulative weights.
    weighted: Vec<(u64, Arc<VersionRoute>)>,
    total: u64,
    matches: Vec<(Matcher, Arc<VersionRoute>)>,
    preview: Option<Arc<VersionRoute>>,
}

impl RouteTable {
    /// `ready` lists the addresses of the ready pods per version.
    pub(crate) fn build(routing: &Routing, ready: &HashMap<&str, Vec<Authority>>, stats: &Stats) -> Self {
        let mut routes: HashMap<String, Arc<VersionRoute>> = HashMap::new();
        let mut route = |version: &str| -> Arc<VersionRoute> {
            if let Some(r) = routes.get(version) {
                return r.clone();
            }
            let r = Arc::new(VersionRoute {
                header: HeaderValue::from_str(version).ok(),
                pods: ready.get(version).cloned().unwrap_or_default(),
                next: AtomicUsize::new(0),
                stats: stats.version(version),
            });
            routes.insert(version.to_string(), r.clone());
            r
        };
        let mut table = RouteTable::default();
        for (version, weight) in &routing.weights {
            if *weight > 0 {
                table.total += u64::from(*weight);
                table.weighted.push((table.total, route(version)));
            }
        }
        for m in &routing.matches {
            let matcher = match m.kind {
                MatchKind::Header => match HeaderName::try_from(m.name.as_str()) {
                    Ok(name) => Matcher::Header(name, m.value.clone()),
                    Err(_) => continue,
                },
                MatchKind::Cookie => Matcher::Cookie(m.name.clone(), m.value.clone()),
            };
            table.matches.push((matcher, route(&m.version)));
        }
        table.preview = routing.preview.as_deref().map(&mut route);
        table
    }

    fn pick<B>(&self, req: &Request<B>) -> Option<&Arc<VersionRoute>> {
        if let Some((_, r)) = self.matches.iter().find(|(m, _)| m.matches(req)) {
            return Some(r);
        }
        if self.total == 0 {
            return None;
        }
        let x = fast_below(self.total);
        self.weighted.iter().find(|(upto, _)| x < *upto).map(|(_, r)| r)
    }
}

pub(crate) struct Router {
    table: RwLock<Arc<RouteTable>>,
    client: ProxyClient,
    routed: Arc<AtomicU64>,
    flag_stats: Arc<FlagStats>,
}

impl Router {
    pub(crate) fn new(client: ProxyClient, routed: Arc<AtomicU64>, flag_stats: Arc<FlagStats>) -> Self {
        Self { table: RwLock::new(Arc::new(RouteTable::default())), client, routed, flag_stats }
    }

    pub(crate) fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// Proxies one request. The preview entry sends everything to the preview version and
    /// stays out of the stats: they describe what users (the active entry) saw.
    pub(crate) async fn handle(self: Arc<Self>, mut req: Request<Incoming>, preview: bool) -> Response<RouterBody> {
        self.routed.fetch_add(1, Ordering::Relaxed);
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        let route = if preview { table.preview.as_ref() } else { table.pick(&req) };
        let Some(route) = route else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "no route\n");
        };
        let start = Instant::now();
        let record = |error: bool| {
            if !preview {
                route.stats.record(start.elapsed().as_secs_f32() * 1000.0, error);
            }
        };
        let Some(authority) = route.next_pod() else {
            record(true);
            return tagged(plain(StatusCode::SERVICE_UNAVAILABLE, "no ready pod\n"), route);
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                record(true);
                return tagged(plain(StatusCode::BAD_GATEWAY, "bad upstream address\n"), route);
            }
        }
        match self.client.request(req).await {
            Ok(resp) => {
                let error = resp.status().is_server_error();
                record(error);
                if !preview {
                    self.record_flags(resp.headers(), start.elapsed().as_secs_f32() * 1000.0, error);
                }
                tagged(resp.map(Either::Left), route)
            }
            Err(_) => {
                record(true);
                tagged(plain(StatusCode::BAD_GATEWAY, "upstream connection failed\n"), route)
            }
        }
    }
}

impl Router {
    /// Counts the request for every flag variant the pod says it served.
    fn record_flags(&self, headers: &hyper::HeaderMap, latency_ms: f32, error: bool) {
        for (name, value) in headers {
            if let Some(flag) = name.as_str().strip_prefix(FLAG_HEADER_PREFIX)
                && let Ok(variant) = value.to_str()
            {
                self.flag_stats.record(flag, variant, latency_ms, error);
            }
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<RouterBody> {
    respond(status, "text/plain", body).map(Either::Right)
}

fn tagged(mut resp: Response<RouterBody>, route: &VersionRoute) -> Response<RouterBody> {
    if let Some(v) = &route.header {
        resp.headers_mut().insert(VERSION_HEADER, v.clone());
    }
    resp
}
