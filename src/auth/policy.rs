//! Who may do what: pure decisions from the caller (an open server, or a verified token) and
//! the request. The HTTP edge asks before it acts; the room asks about a session's owner,
//! which only it knows.

use super::claims::{Claims, Grant};
use crate::types::SessionKind;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured: anyone may do anything (the two-command trial).
    Open,
    /// A verified token.
    Token(Claims),
}

/// A refusal, with the sentence the `403` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// How a caller may act on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRight {
    /// It is the caller's own session.
    Owner,
    /// The caller administers the room: a kick, or a mute imposed by the server.
    Admin,
}

impl Caller {
    /// The identity sessions made by this caller belong to (`None` on an open server).
    pub fn identity(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token(c) => Some(&c.sub),
        }
    }

    /// The display name the token gives, which wins over `?name=`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Open => None,
            Caller::Token(c) => c.name.as_deref(),
        }
    }

    /// The token's claims, if any.
    fn claims_for(&self, room: &str) -> Result<Option<&Claims>, Denied> {
        match self {
            Caller::Open => Ok(None),
            Caller::Token(c) if c.covers(room) => Ok(Some(c)),
            Caller::Token(c) => Err(Denied(format!(
                "this token is for room {:?}, not {room:?}",
                c.room
            ))),
        }
    }

    /// Whether the caller holds any of `grants` (or admin) for `room`.
    fn needs(&self, room: &str, grants: &[Grant], what: &str) -> Result<(), Denied> {
        match self.claims_for(room)? {
            None => Ok(()),
            Some(c) if c.has(Grant::Admin) || grants.iter().any(|g| c.has(*g)) => Ok(()),
            Some(_) => {
                let names: Vec<&str> = grants.iter().map(|g| g.name()).collect();
                Err(Denied(format!(
                    "{what} needs a token with the {} grant (or admin)",
                    names.join(" or ")
                )))
            }
        }
    }

    /// May it make a session of `kind` in `room`? A participant needs `join`; a contributor
    /// `contribute` (or `join`, which includes sending); a viewer `view` (or `join`, which
    /// includes receiving).
    pub fn may_join(&self, room: &str, kind: SessionKind) -> Result<(), Denied> {
        match kind {
            SessionKind::Participant => self.needs(room, &[Grant::Join], "joining"),
            SessionKind::Contributor => {
                self.needs(room, &[Grant::Contribute, Grant::Join], "contributing")
            }
            SessionKind::Viewer => self.needs(room, &[Grant::View, Grant::Join], "watching"),
        }
    }

    /// May it POST an offer to WHIP (`whep == false`) or WHEP at all? Which kind the offer
    /// makes is checked once it is read ([`Caller::may_join`]).
    pub fn may_offer(&self, room: &str, whep: bool) -> Result<(), Denied> {
        if whep {
            self.may_join(room, SessionKind::Viewer)
        } else {
            self.needs(room, &[Grant::Join, Grant::Contribute], "joining")
        }
    }

    /// May it have relay (TURN) credentials? Only a caller who may send or watch, in `room`
    /// when the request names one, else in its token's room: with them anyone can relay
    /// traffic through the deployment's TURN server.
    pub fn may_use_relay(&self, room: Option<&str>) -> Result<(), Denied> {
        let room = match (room, self) {
            (Some(room), _) => room,
            (None, Caller::Token(c)) => c.room.as_str(),
            (None, Caller::Open) => return Ok(()),
        };
        self.needs(
            room,
            &[Grant::Join, Grant::Contribute, Grant::View],
            "relay credentials",
        )
    }

    /// May it read the room's state and events? Any grant for the room will do.
    pub fn may_read_room(&self, room: &str) -> Result<(), Denied> {
        match self.claims_for(room)? {
            Some(c) if c.grants.is_empty() => Err(Denied("this token grants nothing".into())),
            _ => Ok(()),
        }
    }

    /// May it start, stop, list and download recordings?
    pub fn may_record(&self, room: &str) -> Result<(), Denied> {
        self.needs(room, &[Grant::Record], "recordings")
    }

    /// May it administer the room (end it, kick, mute others)?
    pub fn may_administer(&self, room: &str) -> Result<(), Denied> {
        self.needs(room, &[], "administering the room")
    }

    /// May it administer the server (every room, the debug counts)?
    pub fn may_administer_server(&self) -> Result<(), Denied> {
        match self {
            Caller::Open => Ok(()),
            Caller::Token(c) if c.server_admin() => Ok(()),
            Caller::Token(_) => Err(Denied(
                "this needs a server administrator's token (room \"*\", grant admin)".into(),
            )),
        }
    }

    /// How it may act on a session of `room` owned by `owner`, reached by its secret URL
    /// (`by_secret`) or by its public id. The secret URL is the owner's (RFC 9725); with tokens
    /// on, the token must also be the owner's identity. The public id is for administrators.
    pub fn session_right(
        &self,
        room: &str,
        owner: Option<&str>,
        by_secret: bool,
    ) -> Result<SessionRight, Denied> {
        let claims = self.claims_for(room)?;
        let admin = claims.is_none_or(|c| c.has(Grant::Admin));
        let own = match claims {
            None => true,
            Some(c) => owner == Some(c.sub.as_str()),
        };
        match (by_secret, own, admin) {
            (true, true, _) => Ok(SessionRight::Owner),
            (_, _, true) => Ok(SessionRight::Admin),
            (true, false, false) => Err(Denied(
                "this session belongs to another identity than the token's".into(),
            )),
            (false, _, false) => Err(Denied(
                "acting on another participant needs the room's admin grant".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(room: &str, sub: &str, grants: &[Grant]) -> Caller {
        Caller::Token(Claims {
            iss: "key".into(),
            sub: sub.into(),
            name: None,
            exp: u64::MAX,
            nbf: None,
            room: room.into(),
            grants: grants.to_vec(),
        })
    }

    #[test]
    fn an_open_server_allows_everything() {
        let open = Caller::Open;
        assert!(open.may_join("a", SessionKind::Participant).is_ok());
        assert!(open.may_record("a").is_ok() && open.may_administer_server().is_ok());
        assert_eq!(
            open.session_right("a", None, false),
            Ok(SessionRight::Admin)
        );
        assert_eq!(open.session_right("a", None, true), Ok(SessionRight::Owner));
    }

    #[test]
    fn relay_credentials_go_to_those_who_send_or_watch() {
        assert!(Caller::Open.may_use_relay(None).is_ok());
        let viewer = token("a", "kiosk", &[Grant::View]);
        assert!(viewer.may_use_relay(None).is_ok());
        assert!(viewer.may_use_relay(Some("a")).is_ok());
        assert!(viewer.may_use_relay(Some("b")).is_err(), "another room");
        assert!(
            token("a", "rec", &[Grant::Record])
                .may_use_relay(None)
                .is_err()
        );
        assert!(
            token("*", "ops", &[Grant::Admin])
                .may_use_relay(Some("b"))
                .is_ok()
        );
    }

    #[test]
    fn grants_decide_the_kind_of_session() {
        let viewer = token("a", "kiosk", &[Grant::View]);
        assert!(viewer.may_join("a", SessionKind::Viewer).is_ok());
        assert!(viewer.may_join("a", SessionKind::Participant).is_err());
        assert!(viewer.may_offer("a", false).is_err());
        let camera = token("a", "cam", &[Grant::Contribute]);
        assert!(camera.may_offer("a", false).is_ok());
        assert!(camera.may_join("a", SessionKind::Contributor).is_ok());
        assert!(camera.may_join("a", SessionKind::Participant).is_err());
        let ann = token("a", "ann", &[Grant::Join]);
        for kind in [
            SessionKind::Participant,
            SessionKind::Contributor,
            SessionKind::Viewer,
        ] {
            assert!(ann.may_join("a", kind).is_ok());
        }
        assert!(ann.may_record("a").is_err() && ann.may_administer("a").is_err());
    }

    #[test]
    fn a_token_is_for_its_room_only_unless_it_says_every_room() {
        let ann = token("a", "ann", &[Grant::Join]);
        let err = ann.may_join("b", SessionKind::Participant).unwrap_err();
        assert!(err.0.contains("\"a\""), "{err}");
        assert!(ann.may_read_room("b").is_err());
        let ops = token("*", "ops", &[Grant::Admin]);
        assert!(ops.may_administer("b").is_ok() && ops.may_administer_server().is_ok());
        let room_admin = token("a", "host", &[Grant::Admin]);
        assert!(room_admin.may_administer("a").is_ok());
        assert!(room_admin.may_administer_server().is_err());
        assert!(
            token("*", "r", &[Grant::Record])
                .may_administer_server()
                .is_err()
        );
    }

    #[test]
    fn sessions_are_their_owners_and_admins_only() {
        let ann = token("a", "ann", &[Grant::Join]);
        assert_eq!(
            ann.session_right("a", Some("ann"), true),
            Ok(SessionRight::Owner)
        );
        assert!(ann.session_right("a", Some("bob"), true).is_err());
        assert!(ann.session_right("a", Some("bob"), false).is_err());
        // Even her own session, by its public id: that is the administrators' way in.
        assert!(ann.session_right("a", Some("ann"), false).is_err());
        let host = token("a", "host", &[Grant::Admin]);
        assert_eq!(
            host.session_right("a", Some("bob"), false),
            Ok(SessionRight::Admin)
        );
        assert_eq!(
            host.session_right("a", Some("bob"), true),
            Ok(SessionRight::Admin)
        );
    }
}
