//! Simulated users: an open-loop generator per workload, so a slow version cannot slow the
//! arrival rate down (as real users would not wait for each other) and the canary judge sees
//! a steady stream of requests.
//!
//! The users are a fixed population of 10,000 (`x-user-id: user-<n>`), each with a plan drawn
//! once from a fixed distribution (`x-shipdeck-ctx-plan`: 60% `free`, 30% `pro`, 10%
//! `enterprise`), so flag targeting and `fractional` rollouts have someone to match.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::flags::USER_HEADER;
use super::http::{PlainClient, stable_hash};
use crate::cluster::{MatchKind, Target};
use crate::model::AppSettings;

/// Arrivals are released in batches at most this often...
const MIN_TICK: Duration = Duration::from_millis(10);
/// ...and at least this often, so a rate change (or resume) applies quickly.
const MAX_TICK: Duration = Duration::from_millis(100);
/// Requests in flight per workload; beyond it new arrivals are dropped, not queued.
const MAX_IN_FLIGHT: usize = 1_000;
const USERS: u64 = 10_000;
const PLAN_HEADER: HeaderName = HeaderName::from_static("x-shipdeck-ctx-plan");
const NEW_USER: &[u8] = br#"{"name":"Load Tester","email":"load@example.com"}"#;

/// The rate a generator runs at, changeable while it runs.
pub(crate) struct LoadControl {
    rps_bits: AtomicU64,
}

impl LoadControl {
    pub(crate) fn new(rps: f64) -> Self {
        let c = Self { rps_bits: AtomicU64::new(0) };
        c.set(rps);
        c
    }

    pub(crate) fn set(&self, rps: f64) {
        let rps = if rps.is_finite() && rps > 0.0 { rps } else { 0.0 };
        self.rps_bits.store(rps.to_bits(), Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.rps_bits.load(Ordering::Relaxed))
    }
}

/// How the audience of an A/B test is marked on a request.
enum AbMark {
    Header(HeaderName, HeaderValue),
    Cookie(HeaderValue),
}

/// `(x-user-id, plan)` of every simulated user: the same population in every workload and
/// every run, built once per process.
fn population() -> &'static [(HeaderValue, HeaderValue)] {
    static USERS_: OnceLock<Vec<(HeaderValue, HeaderValue)>> = OnceLock::new();
    USERS_.get_or_init(|| {
        (0..USERS)
            .filter_map(|u| {
                let id = HeaderValue::try_from(format!("user-{u}")).ok()?;
                let plan = match stable_hash(&["plan", &u.to_string()]) % 100 {
                    0..60 => "free",
                    60..90 => "pro",
                    _ => "enterprise",
                };
                Some((id, HeaderValue::from_static(plan)))
            })
            .collect()
    })
}

struct Shape {
    /// `(x-user-id, plan)` values.
    users: &'static [(HeaderValue, HeaderValue)],
    list: Uri,
    create: Uri,
    /// Users `0..audience` belong to the A/B audience.
    audience: u64,
    mark: Option<AbMark>,
}

impl Shape {
    fn new(entry: &str, settings: &AppSettings) -> Option<Self> {
        let list: Uri = format!("{entry}/api/v1/users").parse().ok()?;
        let ab = &settings.ab;
        let mark = match ab.match_kind {
            MatchKind::Header => {
                match (HeaderName::try_from(ab.match_name.as_str()), HeaderValue::try_from(&ab.match_value)) {
                    (Ok(n), Ok(v)) => Some(AbMark::Header(n, v)),
                    _ => None,
                }
            }
            MatchKind::Cookie => {
                HeaderValue::try_from(format!("{}={}", ab.match_name, ab.match_value)).ok().map(AbMark::Cookie)
            }
        };
        let audience = (ab.audience.clamp(0.0, 1.0) * USERS as f64).round() as u64;
        Some(Self { users: population(), create: list.clone(), list, audience, mark })
    }

    fn request(&self, rng: &mut SmallRng) -> Option<Request<Full<Bytes>>> {
        let user = rng.random_range(0..USERS);
        let post = rng.random_range(0..10) == 0;
        let (id, plan) = self.users.get(user as usize)?;
        let mut builder = Request::builder().header(USER_HEADER, id.clone()).header(PLAN_HEADER, plan.clone());
        if user < self.audience {
            builder = match &self.mark {
                Some(AbMark::Header(n, v)) => builder.header(n, v),
                Some(AbMark::Cookie(c)) => builder.header(COOKIE, c),
                None => builder,
            };
        }
        let req = if post {
            builder
                .method(Method::POST)
                .uri(self.create.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::from_static(NEW_USER)))
        } else {
            builder.method(Method::GET).uri(self.list.clone()).body(Full::new(Bytes::new()))
        };
        req.ok()
    }
}

/// Runs until aborted. `entry` is the router's base URL (`http://127.0.0.1:PORT`).
pub(crate) async fn run(
    target: Target,
    settings: AppSettings,
    entry: String,
    client: PlainClient,
    control: Arc<LoadControl>,
) {
    let Some(shape) = Shape::new(&entry, &settings) else {
        tracing::warn!(%target, "load generator disabled: bad entry URL {entry}");
        return;
    };
    let mut rng = SmallRng::seed_from_u64(stable_hash(&[&target.env, &target.app, "load"]));
    let mut in_flight = FuturesUnordered::new();
    let mut owed = 0.0_f64;
    let mut last = Instant::now();
    let tick = tokio::time::sleep_until(last);
    tokio::pin!(tick);
    loop {
        tokio::select! {
            () = &mut tick => {
                let now = Instant::now();
                let rps = control.get();
                owed = if rps > 0.0 {
                    // A stalled runtime does not turn into a burst larger than a second's worth.
                    (owed + rps * now.duration_since(last).as_secs_f64()).min(rps.max(1.0))
                } else {
                    0.0
                };
                last = now;
                while owed >= 1.0 {
                    owed -= 1.0;
                    if in_flight.len() >= MAX_IN_FLIGHT {
                        continue;
                    }
                    if let Some(req) = shape.request(&mut rng) {
                        let fut = client.request(req);
                        in_flight.push(async move {
                            if let Ok(resp) = fut.await {
                                let _ = resp.into_body().collect().await;
                            }
                        });
                    }
                }
                // Wake about once per request at low rates: 90 idle-ish workloads ticking at
                // 100 Hz would cost more CPU than their traffic.
                let period = if rps > 0.0 { (1.0 / rps).clamp(MIN_TICK.as_secs_f64(), MAX_TICK.as_secs_f64()) } else { MAX_TICK.as_secs_f64() };
                tick.as_mut().reset(now + Duration::from_secs_f64(period));
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_is_fixed_with_plans_in_about_the_stated_shares() {
        let users = population();
        assert_eq!(users.len(), 10_000);
        assert_eq!(users[42].0, "user-42");
        let share = |plan: &str| users.iter().filter(|(_, p)| p == plan).count() as f64 / users.len() as f64;
        assert!((share("free") - 0.6).abs() < 0.03, "{}", share("free"));
        assert!((share("pro") - 0.3).abs() < 0.03, "{}", share("pro"));
        assert!((share("enterprise") - 0.1).abs() < 0.03, "{}", share("enterprise"));
    }
}
