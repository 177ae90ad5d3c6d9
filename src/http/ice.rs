//! The STUN and TURN servers a client is given (`crate::ice_servers` makes them): as the
//! `RTCConfiguration` a page passes to `RTCPeerConnection` (`GET /ice-servers`, before it makes
//! its offer), and as RFC 9725 §4.6 `Link` headers on the `201` of WHIP and WHEP. Relay
//! credentials go only to callers allowed to send or watch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};

use super::Reply;
use super::access::{Authz, allow};
use super::reply::json;
use crate::auth::Caller;
use crate::ice_servers::{IceServer, IceServers, link_headers};

/// What `GET /ice-servers` answers: an `RTCConfiguration` dictionary.
#[derive(Serialize)]
struct Configuration {
    #[serde(rename = "iceServers")]
    ice_servers: Vec<IceServer>,
}

/// `GET /ice-servers[?room=R]`: the servers for the caller (with tokens on, one that may join,
/// contribute or view; in room R when the page names it). An empty list when none are set.
pub(super) fn ice_servers(
    ice: &IceServers,
    query: &HashMap<String, String>,
    authz: Authz,
) -> Reply {
    let room = query.get("room").map(String::as_str);
    let caller = match allow(authz, |c| c.may_use_relay(room)) {
        Ok(caller) => caller,
        Err(reply) => return reply,
    };
    // Open server: the credentials name no one in particular.
    let who = caller.identity().unwrap_or("guest");
    let mut reply = json(
        StatusCode::OK,
        &Configuration {
            ice_servers: ice.for_caller(who, SystemTime::now()),
        },
    );
    // Credentials that expire: no cache keeps them.
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

/// Adds one `Link: <url>; rel="ice-server"...` header per server URL to a WHIP or WHEP `201`,
/// with credentials for `caller` (or, on an open server, for the session's public id `session`).
pub(super) fn add_links(reply: &mut Reply, ice: &Arc<IceServers>, caller: &Caller, session: &str) {
    if ice.is_empty() {
        return;
    }
    let who = caller.identity().unwrap_or(session);
    for link in link_headers(&ice.for_caller(who, SystemTime::now())) {
        // Values are built from configured URLs and escaped credentials; one that is still not
        // a header value (a control character in a URL) is left out rather than sent broken.
        if let Ok(value) = HeaderValue::from_str(&link) {
            reply.headers_mut().append(header::LINK, value);
        }
    }
}
