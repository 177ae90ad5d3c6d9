//! What a room actor holds of the world outside it: the configuration, the factories for its
//! pipeline and peers, its own event channel, the recordings store, the shutdown signal, and a
//! way to tell the registry it ended. Nothing else: the actor never reaches into the registry.

use std::sync::{Arc, Weak};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::events::RoomEvent;
use super::recording::Recordings;
use super::registry::RoomsInner;
use crate::config::Config;
use crate::media::MediaFactory;
use crate::peer::PeerFactory;
use crate::webhooks::{WebhookBody, Webhooks};

/// A room's view of the process.
pub(super) struct RoomContext {
    /// The room's name (shared with every event it publishes).
    pub name: Arc<str>,
    pub config: Arc<Config>,
    pub media: MediaFactory,
    pub peers: PeerFactory,
    /// The room's own event channel; its event streams hold the receiving ends.
    pub events: broadcast::Sender<RoomEvent>,
    pub recordings: Recordings,
    /// Cancelled when the server stops: the room ends.
    pub shutdown: CancellationToken,
    /// Cancelled when the server starts draining: the room ends once empty, without lingering.
    pub draining: CancellationToken,
    /// What its mixer measures, and its receivers per output (for `GET /metrics`).
    pub metrics: Arc<crate::metrics::RoomMetrics>,
    /// Where its events go besides its streams (`--webhook-url`).
    pub webhooks: Webhooks,
    /// Tells the registry this room ended (see [`Registration`]).
    pub registration: Registration,
}

impl RoomContext {
    /// Publishes an event to the room's streams (nobody listening is fine) and, if it is one,
    /// as a webhook.
    pub fn publish(&self, event: RoomEvent) {
        notify(&self.webhooks, &self.recordings, &self.name, &event);
        let _ = self.events.send(event);
    }

    /// Announces something that is a webhook and not a room event.
    pub fn notify(&self, body: WebhookBody) {
        self.webhooks.send(&self.name, body);
    }
}

/// Sends `event` of `room` as a webhook, if it makes one (also for events published from a
/// room's background tasks, which hold no context).
pub(super) fn notify(webhooks: &Webhooks, recordings: &Recordings, room: &str, event: &RoomEvent) {
    let path = |r: &super::RecordingInfo| {
        recordings
            .path(&r.room, r.format, &r.id)
            .display()
            .to_string()
    };
    if let Some(body) = WebhookBody::from_room_event(event, path) {
        webhooks.send(room, body);
    }
}

/// A room's entry in the registry, to remove when the room ends. Weak: a room does not keep
/// the registry alive.
pub(super) struct Registration {
    pub(super) registry: Weak<RoomsInner>,
    pub(super) instance: u64,
}

impl Registration {
    /// Removes the room from the registry if the entry is still this instance: from here on
    /// the name belongs to whoever joins next.
    pub fn forget(&self, name: &str) {
        if let Some(registry) = self.registry.upgrade() {
            registry.forget(name, self.instance);
        }
    }
}
