//! What an access token says: who (`sub`, `name`), for which room (`room`, `*` for all), what
//! they may do (`grants`), signed by which key (`iss`) and until when (`exp`, `nbf`). The JSON
//! shape is the JWT payload (RFC 7519 claim names).

use serde::{Deserialize, Serialize};

/// The room value that means every room.
pub const ANY_ROOM: &str = "*";

/// One thing a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Join as a participant over WHIP (send and receive).
    Join,
    /// Contribute over WHIP (send only: a camera, OBS).
    Contribute,
    /// Watch over WHEP.
    View,
    /// Start, stop, list and download recordings.
    Record,
    /// Everything in the room; with room `*`, the whole server.
    Admin,
}

impl Grant {
    /// The name used in tokens and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Join => "join",
            Grant::Contribute => "contribute",
            Grant::View => "view",
            Grant::Record => "record",
            Grant::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Grant {
    type Err = String;

    fn from_str(s: &str) -> Result<Grant, String> {
        [
            Grant::Join,
            Grant::Contribute,
            Grant::View,
            Grant::Record,
            Grant::Admin,
        ]
        .into_iter()
        .find(|g| g.name() == s)
        .ok_or_else(|| format!("unknown grant {s:?} (join, contribute, view, record or admin)"))
    }
}

/// A token's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key whose secret signed it.
    pub iss: String,
    /// The identity: who this is (sessions it makes are its own).
    pub sub: String,
    /// A display name, shown in the room (instead of `?name=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The room it is for, or [`ANY_ROOM`].
    pub room: String,
    /// What it allows there.
    pub grants: Vec<Grant>,
}

impl Claims {
    /// Whether it is for `room`.
    pub fn covers(&self, room: &str) -> bool {
        self.room == ANY_ROOM || self.room == room
    }

    /// Whether it carries `grant`.
    pub fn has(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    /// An administrator of the whole server.
    pub fn server_admin(&self) -> bool {
        self.room == ANY_ROOM && self.has(Grant::Admin)
    }
}
