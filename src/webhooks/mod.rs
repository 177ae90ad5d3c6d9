//! Webhooks (`--webhook-url`, repeatable): each room's events that matter to other systems
//! (`room_started`, `room_ended`, `participant_joined`, `participant_left`,
//! `recording_started`, `recording_finished`, `recording_failed`) POSTed as JSON, signed with
//! HMAC-SHA256 of the body under the first API key's secret ([`event::sign`]).
//!
//! Delivery never holds a room up: [`Webhooks::send`] serialises and signs once, then
//! `try_send`s into a bounded queue per URL; a full queue drops the event and counts it
//! (`tessera_webhooks_total{result="dropped"}`). One task per URL delivers its queue in order
//! (so each room's events arrive in the order they happened), retrying a timeout, a refused
//! connection or a 5xx with backoff up to [`ATTEMPTS`] times; a 4xx is final. The tasks are
//! owned by [`WebhookWorkers`], which [`crate::run`] stops after the rooms ended, giving the
//! queues a bounded time to empty.

pub mod event;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use event::{KEY_HEADER, SIGNATURE_HEADER, Webhook, WebhookBody, sign};

use crate::auth::ApiKey;

/// Events a URL's queue holds before new ones are dropped.
const QUEUE: usize = 1024;
/// Tries per event.
pub const ATTEMPTS: u32 = 5;
/// The wait before the second try; doubled for each next one (0.25, 0.5, 1, 2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// How long one try may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the queues get to empty once the server stops.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// An event ready to deliver: its body and signature, made once for every URL.
struct Delivery {
    event: &'static str,
    id: String,
    body: Bytes,
    signature: Option<(String, String)>,
}

/// The sending side: cheap to clone, held by every room. Without URLs it does nothing.
#[derive(Clone, Default)]
pub struct Webhooks {
    queues: Arc<Vec<mpsc::Sender<Arc<Delivery>>>>,
    key: Option<Arc<ApiKey>>,
}

/// The delivery tasks, one per URL; [`WebhookWorkers::stop`] ends them.
pub struct WebhookWorkers {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Webhooks {
    /// Starts one delivery task per URL; events are signed with `key`'s secret.
    pub fn start(urls: &[String], key: Option<ApiKey>) -> (Webhooks, WebhookWorkers) {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let queues = urls
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tasks.spawn(deliver_all(client.clone(), url.clone(), rx, stop.clone()));
                tx
            })
            .collect();
        let hooks = Webhooks {
            queues: Arc::new(queues),
            key: key.map(Arc::new),
        };
        (hooks, WebhookWorkers { tasks, stop })
    }

    /// Queues `body` about `room` for every URL; never waits.
    pub fn send(&self, room: &str, body: WebhookBody) {
        if self.queues.is_empty() {
            return;
        }
        let hook = Webhook {
            id: format!("{:016x}", rand::random::<u64>()),
            timestamp: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            room: room.to_owned(),
            body,
        };
        let event = event_name(&hook.body);
        let body = match serde_json::to_vec(&hook) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!("a webhook that does not serialise ({event}): {e}");
                return;
            }
        };
        let signature = self
            .key
            .as_ref()
            .map(|k| (k.key.clone(), sign(&k.secret, &body)));
        let delivery = Arc::new(Delivery {
            event,
            id: hook.id,
            body,
            signature,
        });
        for queue in self.queues.iter() {
            if queue.try_send(delivery.clone()).is_err() {
                // Full (a receiver far behind) or stopped: this event is lost for that URL.
                count(event, "dropped");
                tracing::warn!(event, "a webhook queue is full: event dropped");
            }
        }
    }
}

impl WebhookWorkers {
    /// Lets every queue empty (bounded by [`FLUSH_DEADLINE`]), then ends the tasks.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let flushed = tokio::time::timeout(FLUSH_DEADLINE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("webhooks still queued after {FLUSH_DEADLINE:?}: dropped");
            self.tasks.shutdown().await;
        }
    }
}

fn event_name(body: &WebhookBody) -> &'static str {
    match body {
        WebhookBody::RoomStarted => "room_started",
        WebhookBody::RoomEnded { .. } => "room_ended",
        WebhookBody::ParticipantJoined { .. } => "participant_joined",
        WebhookBody::ParticipantLeft { .. } => "participant_left",
        WebhookBody::RecordingStarted { .. } => "recording_started",
        WebhookBody::RecordingFinished { .. } => "recording_finished",
        WebhookBody::RecordingFailed { .. } => "recording_failed",
    }
}

fn count(event: &'static str, result: &'static str) {
    let labels = crate::metrics::WebhookLabels { event, result };
    crate::metrics::families()
        .webhooks
        .get_or_create(&labels)
        .inc();
}

/// Delivers `url`'s queue in order until the server stops and the queue is empty.
async fn deliver_all(
    client: reqwest::Client,
    url: String,
    mut queue: mpsc::Receiver<Arc<Delivery>>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            next = queue.recv() => next,
            () = stop.cancelled() => {
                // The server stops: what is queued still goes (the rooms' last events).
                queue.close();
                queue.recv().await
            }
        };
        let Some(delivery) = next else { return };
        deliver(&client, &url, &delivery).await;
    }
}

/// One event to one URL, with retries.
async fn deliver(client: &reqwest::Client, url: &str, delivery: &Delivery) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.body.clone());
        if let Some((key, signature)) = &delivery.signature {
            request = request
                .header(KEY_HEADER, key)
                .header(SIGNATURE_HEADER, signature);
        }
        let outcome = match request.send().await {
            Ok(r) if r.status().is_success() => {
                count(delivery.event, "delivered");
                return;
            }
            Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                format!("HTTP {}", r.status())
            }
            Ok(r) => {
                count(delivery.event, "refused");
                tracing::warn!(url, event = delivery.event, id = delivery.id, status = %r.status(), "a webhook was refused; not retried");
                return;
            }
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            count(delivery.event, "failed");
            tracing::warn!(
                url,
                event = delivery.event,
                id = delivery.id,
                "a webhook failed {ATTEMPTS} times ({outcome}); dropped"
            );
            return;
        }
        tracing::debug!(
            url,
            event = delivery.event,
            attempt,
            "webhook: {outcome}; retrying in {backoff:?}"
        );
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}
