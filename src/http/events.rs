//! A room's event stream (`GET /rooms/{room}/events`): Server-Sent Events, typed JSON, a
//! snapshot first. Each stream reads its room's own channel.

use std::net::IpAddr;

use super::Reply;
use super::access::{Authz, allow};
use super::limits::Admit;
use super::reply::error;
use crate::admission::Slot;
use crate::room::Rooms;
use crate::room::events::RoomEvent;
use crate::room::valid_room_name;
use warp::http::StatusCode;

/// How often an idle event stream carries a comment, so proxies keep it open.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// One reader's stream of a room's events; when it ends (the client went away), the event
/// channels nobody reads any more are forgotten.
struct EventStream {
    rooms: Rooms,
    room: String,
    /// Its place among its address's streams, given back when it closes.
    _slot: Slot<IpAddr>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.rooms.sweep_event_channels();
    }
}

/// The room's event stream: a snapshot, then every event of that room as it happens. A reader
/// that falls behind its room's channel gets a fresh snapshot instead of the events it missed.
pub(super) fn events(room: String, authz: Authz, admit: Admit, rooms: Rooms) -> Reply {
    use futures::StreamExt;
    use warp::Reply as _;
    if !valid_room_name(&room) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_room_name",
            "room names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
        );
    }
    if let Err(reply) = allow(authz, |c| c.may_read_room(&room)) {
        return reply;
    }
    let slot = match admit.stream() {
        Ok(slot) => slot,
        Err(reply) => return reply,
    };
    // Subscribed before the snapshot is taken, so nothing falls between the two. The room's
    // own channel: another room's events never reach (or delay) this reader.
    let events = rooms.subscribe_events(&room);
    // Ends once the server closed its rooms (their last events sent), so a stopping server
    // is not held open by its readers.
    let closed = rooms.closed();
    let first = futures::stream::once({
        let (rooms, room) = (rooms.clone(), room.clone());
        async move { rooms.snapshot(&room).await }
    });
    let state = (
        events,
        EventStream {
            rooms,
            room,
            _slot: slot,
        },
    );
    let rest = futures::stream::unfold(state, |(mut events, stream)| async move {
        use tokio::sync::broadcast::error::RecvError;
        match events.recv().await {
            Ok(event) => Some((event, (events, stream))),
            Err(RecvError::Lagged(_)) => {
                // Fell behind: the state, re-read, instead of the events it missed.
                let snapshot = stream.rooms.snapshot(&stream.room).await;
                Some((snapshot, (events, stream)))
            }
            Err(RecvError::Closed) => None,
        }
    });
    let stream = first
        .chain(rest)
        .take_until(closed)
        .map(|event: RoomEvent| {
            warp::sse::Event::default()
                .json_data(&event)
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
    warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(stream)).into_response()
}
