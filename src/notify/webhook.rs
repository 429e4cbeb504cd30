//! Webhook delivery: one queue and one worker per channel, so a channel that hangs delays only
//! itself, and nothing the engine does ever waits for a webhook. Each message is tried up to
//! the channel's `attempts` with a timeout per attempt and an exponential backoff between
//! attempts (capped); the outcome is stored, and a delivery that is given up is reported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::engine::Event;
use crate::model::{Channel, ChannelFormat, Delivery, NotifyEvent, ReleaseNotes};
use crate::store::Store;

/// Messages waiting per channel before new ones are dropped (and the drop recorded).
const QUEUE: usize = 256;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At most this much of the release notes goes into a Slack text.
const NOTES_IN_TEXT: usize = 2500;

/// Reports what the notifier wants people to see (a delivery given up) as an engine event.
pub type Report = Arc<dyn Fn(Event) + Send + Sync>;

/// One message for one channel.
#[derive(Debug, Clone)]
pub struct Message {
    pub event: NotifyEvent,
    /// The release or emergency id.
    pub subject: String,
    pub release_id: Option<String>,
    /// The request body.
    pub body: Value,
}

/// What the message is about, for the JSON payload.
pub enum About {
    Release(Value),
    Emergency(Value),
}

/// The body a channel receives: `{"text"}` for Slack-compatible channels, the generic JSON
/// event otherwise. Release notes are attached to both when there are some.
pub fn body(
    format: ChannelFormat,
    event: NotifyEvent,
    severity: &str,
    about: &About,
    text: &str,
    notes: Option<&ReleaseNotes>,
) -> Value {
    match format {
        ChannelFormat::Slack => {
            let mut text = text.to_string();
            if let Some(n) = notes.filter(|n| n.problem.is_none() && !n.is_empty()) {
                let md = n.to_markdown();
                let mut cut: String = md.chars().take(NOTES_IN_TEXT).collect();
                if cut.len() < md.len() {
                    cut.push_str("\n…");
                }
                text.push_str("\n\n");
                text.push_str(&cut);
            }
            json!({ "text": text })
        }
        ChannelFormat::Json => {
            let mut body = json!({
                "event": event.name(),
                "severity": severity,
                "text": text,
                "notes": notes,
            });
            match about {
                About::Release(r) => body["release"] = r.clone(),
                About::Emergency(e) => body["emergency"] = e.clone(),
            }
            body
        }
    }
}

/// The channels' queues and the count of messages not yet delivered or given up.
pub struct Deliverer {
    queues: BTreeMap<String, mpsc::Sender<Message>>,
    pending: watch::Sender<usize>,
    store: Arc<Store>,
    report: Report,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Deliverer {
    pub fn start(channels: &[Channel], store: Arc<Store>, report: Report) -> Self {
        let (pending, _) = watch::channel(0usize);
        let mut queues = BTreeMap::new();
        let mut workers = Vec::new();
        for c in channels {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.insert(c.name.clone(), tx);
            let worker =
                Worker { channel: c.clone(), store: store.clone(), report: report.clone(), pending: pending.clone() };
            workers.push(tokio::spawn(worker.run(rx)));
        }
        Self { queues, pending, store, report, workers }
    }

    /// Queue a message for a channel; never waits.
    pub fn send(&self, channel: &str, message: Message) {
        let Some(queue) = self.queues.get(channel) else { return };
        self.pending.send_modify(|n| *n += 1);
        if let Err(e) = queue.try_send(message) {
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
            let message = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            let why = format!("dropped: {QUEUE} messages already wait for this channel");
            record(&self.store, &self.report, channel, &message, 0, Some(why));
        }
    }

    /// Messages queued or being tried now.
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Wait until every queued message is delivered or given up, or `limit` has passed.
    pub async fn settle(&self, limit: Duration) -> bool {
        let mut rx = self.pending.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await.is_ok_and(|r| r.is_ok())
    }

    pub fn stop(&self) {
        for w in &self.workers {
            w.abort();
        }
    }
}

struct Worker {
    channel: Channel,
    store: Arc<Store>,
    report: Report,
    pending: watch::Sender<usize>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let client = match crate::http::client_builder().timeout(self.channel.timeout.0).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("webhook channel {}: no HTTP client: {e}", self.channel.name);
                return;
            }
        };
        while let Some(message) = rx.recv().await {
            let (attempts, error) = self.deliver(&client, &message).await;
            record(&self.store, &self.report, &self.channel.name, &message, attempts, error);
            self.pending.send_modify(|n| *n = n.saturating_sub(1));
        }
    }

    /// Try until delivered, refused for good (a 4xx other than 429), or out of attempts.
    async fn deliver(&self, client: &reqwest::Client, message: &Message) -> (u32, Option<String>) {
        let c = &self.channel;
        let mut last = None;
        for attempt in 1..=c.attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff(c.backoff.0, attempt - 1)).await;
            }
            match client.post(&c.url).json(&message.body).send().await {
                Ok(r) if r.status().is_success() => return (attempt, None),
                Ok(r) => {
                    let status = r.status();
                    let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
                    last = Some(format!(
                        "HTTP {status}{}",
                        if text.is_empty() { String::new() } else { format!(": {text}") }
                    ));
                    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                        return (attempt, last);
                    }
                }
                Err(e) => last = Some(describe(&e, c.timeout.0)),
            }
            tracing::warn!("webhook {} attempt {attempt}/{}: {}", c.name, c.attempts, last.as_deref().unwrap_or(""));
        }
        (c.attempts, last)
    }
}

/// The wait before retry `n` (1-based): `base` × 2^(n-1), at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(n.saturating_sub(1))).min(MAX_BACKOFF)
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {}", crate::model::HumanDuration(timeout))
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut root = e.to_string();
        while let Some(s) = source {
            root = s.to_string();
            source = s.source();
        }
        format!("cannot connect: {root}")
    } else {
        e.to_string()
    }
}

fn record(store: &Store, report: &Report, channel: &str, m: &Message, attempts: u32, error: Option<String>) {
    let d = Delivery {
        at: Utc::now(),
        channel: channel.to_string(),
        event: m.event.name().to_string(),
        subject: m.subject.clone(),
        attempts,
        ok: error.is_none(),
        last_error: error.clone(),
    };
    if let Err(e) = store.add_delivery(&d) {
        tracing::error!("recording a webhook delivery: {e}");
    }
    if let Some(why) = error {
        let message = format!(
            "webhook {channel}: {} about {} not delivered after {attempts} attempt{}: {why}",
            m.event,
            m.subject,
            if attempts == 1 { "" } else { "s" }
        );
        tracing::warn!("{message}");
        report(Event::Note { release_id: m.release_id.clone(), message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(500);
        assert_eq!(backoff(b, 1), Duration::from_millis(500));
        assert_eq!(backoff(b, 2), Duration::from_secs(1));
        assert_eq!(backoff(b, 4), Duration::from_secs(4));
        assert_eq!(backoff(b, 12), MAX_BACKOFF);
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }

    #[test]
    fn slack_gets_text_with_notes_and_json_gets_the_event() {
        let mut notes = ReleaseNotes::unavailable("web", "1.1.0", Some("1.0.0"), "");
        notes.problem = None;
        notes.fixes.push(crate::notify::notes::parse_commit("abcdef1234567", "Ann", "fix: the banner"));
        let about = About::Release(json!({"id": "r1"}));
        let slack =
            body(ChannelFormat::Slack, NotifyEvent::RolledBack, "error", &about, "web rolled back", Some(&notes));
        let text = slack["text"].as_str().unwrap();
        assert!(text.starts_with("web rolled back\n\n# web 1.1.0") && text.contains("- the banner (abcdef123456)"));
        assert_eq!(slack.as_object().unwrap().len(), 1);
        let j = body(ChannelFormat::Json, NotifyEvent::RolledBack, "error", &about, "web rolled back", Some(&notes));
        assert_eq!(
            (j["event"].as_str(), j["severity"].as_str(), j["release"]["id"].as_str()),
            (Some("rolled_back"), Some("error"), Some("r1"))
        );
        assert_eq!(j["notes"]["fixes"][0]["subject"], "the banner");
    }
}
