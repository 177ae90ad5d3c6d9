//! Joining: from an offer to a session. What the offer asks for is decided in pure functions
//! (the session's kind, the codecs, the H.264 level a receiver takes), tested without a peer;
//! then the room makes the mix-minus, answers the offer in the background (ICE gathering takes
//! time), and takes the session in when the answer is ready.

use std::time::Instant;
use tracing::Instrument;

use tokio::sync::oneshot;

use super::actor::RoomActor;
use super::api::{JoinAnswer, JoinError, JoinRequest};
use super::events::RoomEvent;
use super::session::{Pending, Session};
use super::tiers::{TierPolicy, h264_ceiling};
use crate::peer::{Direction, OfferSummary, OfferedFormat, Peer, PeerError, SendPlan};
use crate::sdp::h264::{Level, ProfileLevelId};
use crate::sdp::ice_ufrag;
use crate::types::{
    ConnectionState, MediaKind, OutputKey, SessionId, SessionKind, SessionSecret, Tier, VideoCodec,
};

/// A finished negotiation: the session and its peer with the answer, or why not.
pub(super) type Negotiated = (SessionId, Result<(Peer, String), PeerError>);

/// The codec tessera would send for one offered video format: VP8, or H.264 in packetization
/// mode 1 (the only mode its payloader writes: FU-A and STAP-A).
fn receivable_video(format: &OfferedFormat) -> Option<VideoCodec> {
    match VideoCodec::from_sdp_name(&format.name)? {
        VideoCodec::H264 if format.parameter("packetization-mode") != Some("1") => None,
        codec => Some(codec),
    }
}

/// The video codec a receiver gets: the first of its offer's formats the room can encode (the
/// offer lists them in the offerer's order of preference).
pub(super) fn choose_video_codec(
    offer: &OfferSummary,
    can: impl Fn(VideoCodec) -> bool,
) -> Option<VideoCodec> {
    offer
        .first(MediaKind::Video)?
        .formats
        .iter()
        .filter_map(receivable_video)
        .find(|&c| can(c))
}

/// The H.264 level a receiver declared for the payload type tessera will send it on. webrtc-rs
/// picks that payload type the way this does: the first whose profile bytes and packetization
/// mode match tessera's own (`42e0`, mode 1), else the first H.264 one. `None`: no level was
/// declared (no `profile-level-id`).
pub(super) fn declared_h264_level(offer: &OfferSummary) -> Option<Level> {
    let formats = &offer.first(MediaKind::Video)?.formats;
    let h264 = || {
        formats
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("H264"))
    };
    let exact = h264().find(|f| {
        f.parameter("packetization-mode") == Some("1")
            && f.parameter("profile-level-id")
                .is_some_and(|p| p.len() == 6 && p[..4].eq_ignore_ascii_case("42e0"))
    });
    let format = exact.or_else(|| h264().next())?;
    let profile: ProfileLevelId = format.parameter("profile-level-id")?.parse().ok()?;
    Some(profile.level)
}

/// Decides what kind of session an offer makes on an endpoint (pure).
pub(super) fn classify(whep: bool, offer: &OfferSummary) -> Result<SessionKind, JoinError> {
    let active: Vec<_> = offer
        .media
        .iter()
        .filter(|m| m.direction != Direction::Inactive)
        .collect();
    if active.is_empty() {
        return Err(JoinError::BadOffer(
            "every m-line of the offer is inactive".into(),
        ));
    }
    if whep {
        if active.iter().any(|m| m.direction != Direction::RecvOnly) {
            return Err(JoinError::BadOffer(
                "a WHEP offer must be recvonly; to send media, POST to the room's /whip".into(),
            ));
        }
        return Ok(SessionKind::Viewer);
    }
    if !active.iter().any(|m| m.direction.sends()) {
        return Err(JoinError::BadOffer(
            "a WHIP offer must send media; to only watch, POST to the room's /whep".into(),
        ));
    }
    Ok(if active.iter().any(|m| m.direction.receives()) {
        SessionKind::Participant
    } else {
        SessionKind::Contributor
    })
}

/// Checks every active m-line offers a codec the room can decode (when it sends) and encode
/// (when it receives); names what was offered otherwise (pure but for `can_decode`).
pub(super) fn check_codecs(
    offer: &OfferSummary,
    can_decode: impl Fn(MediaKind, &str) -> bool,
    can_encode_video: impl Fn(VideoCodec) -> bool,
) -> Result<(), JoinError> {
    for m in offer
        .media
        .iter()
        .filter(|m| m.direction != Direction::Inactive)
    {
        let usable = m.formats.iter().any(|f| {
            let mime = format!("{}/{}", m.kind, f.name);
            let receivable = match m.kind {
                MediaKind::Video => receivable_video(f).is_some_and(&can_encode_video),
                MediaKind::Audio => f.name.eq_ignore_ascii_case("opus"),
            };
            (!m.direction.sends() || can_decode(m.kind, &mime))
                && (!m.direction.receives() || receivable)
        });
        if !usable {
            let wanted = match m.kind {
                MediaKind::Video if m.direction.receives() => "VP8 or H.264 (packetization-mode=1)",
                MediaKind::Video => "VP8 or H.264",
                MediaKind::Audio => "Opus",
            };
            let offered = m
                .codecs
                .iter()
                .filter(|c| {
                    !matches!(
                        c.to_ascii_lowercase().as_str(),
                        "rtx" | "red" | "ulpfec" | "flexfec-03"
                    )
                })
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Err(JoinError::UnsupportedCodec(format!(
                "no {} codec tessera can use was offered (offered: {}); tessera needs {wanted}",
                m.kind,
                if offered.is_empty() { "none" } else { &offered }
            )));
        }
    }
    Ok(())
}

impl RoomActor {
    pub(super) async fn begin_join(
        &mut self,
        request: JoinRequest,
        reply: oneshot::Sender<Result<JoinAnswer, JoinError>>,
    ) {
        let JoinRequest {
            whep,
            offer,
            name,
            quality,
            screen,
            owner,
            caller,
            slots,
        } = request;
        let prepared = (|| {
            let summary = crate::peer::inspect_offer(&offer)
                .map_err(|e| JoinError::BadOffer(e.to_string()))?;
            let kind = classify(whep, &summary)?;
            let video_sent = summary
                .first(MediaKind::Video)
                .is_some_and(|m| m.direction.sends());
            if screen && (kind != SessionKind::Contributor || !video_sent) {
                return Err(JoinError::BadOffer(
                    "a screen share (?source=screen) is a sendonly WHIP offer with video".into(),
                ));
            }
            // A screen is tied to the session sharing it, and ends with it: the one `?owner=`
            // names (with tokens, it must be of the caller's own identity), else the caller's
            // own camera session.
            let owner = match owner {
                Some(owner) => {
                    let found = self
                        .sessions
                        .iter()
                        .find(|s| s.id == owner)
                        .ok_or_else(|| {
                            JoinError::BadOffer(format!(
                                "?owner={owner} is no session of this room"
                            ))
                        })?;
                    if let Some(identity) = caller.identity()
                        && found.identity.as_deref() != Some(identity)
                    {
                        return Err(JoinError::Forbidden(crate::auth::Denied(
                            "?owner= must be a session of the token's own identity".into(),
                        )));
                    }
                    Some(owner)
                }
                None if screen => caller.identity().and_then(|identity| {
                    self.sessions
                        .iter()
                        .find(|s| !s.screen && s.identity.as_deref() == Some(identity))
                        .map(|s| s.id)
                }),
                None => None,
            };
            // What the offer makes is known now: a viewer's token cannot send.
            caller
                .may_join(&self.ctx.name, kind)
                .map_err(JoinError::Forbidden)?;
            let media = &self.ctx.media;
            check_codecs(
                &summary,
                |k, mime| media.can_decode(k, mime),
                |c| media.can_encode(c),
            )?;
            let max = self.ctx.config.max_participants;
            if kind.sends() && self.sending_sessions() >= max {
                return Err(JoinError::RoomFull(max));
            }
            Ok((summary, kind, owner))
        })();
        let (summary, kind, owner) = match prepared {
            Ok(ok) => ok,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let m = |k: MediaKind| summary.first(k).map(|m| m.direction);
        let receives = |k| kind.receives() && m(k).is_some_and(Direction::receives);
        let media = &self.ctx.media;
        let video_codec = choose_video_codec(&summary, |c| media.can_encode(c)).unwrap_or_default();
        // An H.264 decoder declares the most it takes: the receiver's tiers stop there.
        let mix = &self.ctx.config.mix;
        let (ceiling, h264_level) = h264_ceiling(declared_h264_level(&summary), |tier| {
            let (width, height, _) = mix.output(OutputKey {
                codec: VideoCodec::H264,
                tier,
            });
            Level::for_video(width, height, mix.fps).unwrap_or(Level(52))
        });
        let ceiling = if video_codec == VideoCodec::H264 {
            ceiling
        } else {
            Tier::High
        };
        let plan = SendPlan {
            video: receives(MediaKind::Video),
            video_codec,
            audio: receives(MediaKind::Audio),
            h264_level,
        };
        let output = plan.video.then(|| OutputKey {
            codec: plan.video_codec,
            tier: quality.unwrap_or(Tier::High).max(ceiling),
        });
        let sends_video = m(MediaKind::Video).is_some_and(Direction::sends);
        let session = SessionId::random();
        let remote_ufrag = ice_ufrag(&offer);
        let peers = self.ctx.peers.clone();
        let events = self.peer_events_tx.clone();
        // Its peer's work logs in this span, inside the room's: `room` and `session` on every
        // line.
        let span = tracing::info_span!("session", %session);
        self.negotiations.spawn(
            async move {
                let result = peers.answer(session, &offer, plan, events).await;
                (session, result)
            }
            .instrument(span),
        );
        self.pending.insert(
            session,
            Pending {
                kind,
                name: caller.name().map(str::to_owned).or(name),
                secret: SessionSecret::random(),
                identity: caller.identity().map(str::to_owned),
                sends_video,
                screen,
                owner,
                plan,
                remote_ufrag,
                output,
                pinned: quality.is_some(),
                ceiling,
                slots,
                reply,
                early: Vec::new(),
            },
        );
        self.update_empty();
    }

    pub(super) async fn finish_join(
        &mut self,
        session: SessionId,
        result: Result<(Peer, String), PeerError>,
    ) {
        let Some(pending) = self.pending.remove(&session) else {
            if let Ok((peer, _)) = result {
                self.background.spawn(peer.close());
            }
            return;
        };
        let (peer, sdp) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.mixer.remove_session(session).await;
                let err = match e {
                    PeerError::BadOffer(m) => {
                        JoinError::BadOffer(format!("malformed SDP offer: {m}"))
                    }
                    other => JoinError::Internal(other.to_string()),
                };
                let _ = pending.reply.send(Err(err));
                self.update_empty();
                return;
            }
        };
        if pending.reply.is_closed() {
            // The client gave up waiting: nobody will ever use this answer.
            self.mixer.remove_session(session).await;
            self.background.spawn(peer.close());
            self.update_empty();
            return;
        }
        let etag = format!("\"{:016x}\"", rand::random::<u64>());
        self.sessions.push(Session {
            id: session,
            secret: pending.secret,
            identity: pending.identity.clone(),
            kind: pending.kind,
            name: pending.name.clone(),
            state: ConnectionState::Connecting,
            connect_by: Some(Instant::now() + super::session::CONNECT_DEADLINE),
            peer,
            sends_video: pending.sends_video,
            screen: pending.screen,
            owner: pending.owner,
            pinned: false,
            sending: false,
            output: pending.output,
            tier_policy: TierPolicy::new(
                pending.output.map_or(Tier::High, |o| o.tier),
                pending.pinned,
            )
            .with_ceiling(pending.ceiling),
            mix_minus: None,
            voice: Default::default(),
            hears: pending.plan.audio,
            inputs: Vec::new(),
            last_pli: None::<Instant>,
            etag: etag.clone(),
            remote_ufrag: pending.remote_ufrag,
            audio_muted: false,
            video_muted: false,
            audio_held: false,
            video_held: false,
            slots: pending.slots,
            counted: crate::metrics::SessionCount::joined(pending.kind.name()),
        });
        tracing::info!(room = %self.ctx.name, %session, kind = ?pending.kind, name = ?pending.name, "session joined");
        // Who joined first, then where the tiles went.
        if pending.kind.sends() {
            let joined = self.sessions.last().expect("pushed above");
            self.ctx.publish(RoomEvent::ParticipantJoined {
                participant: self.describe(joined),
            });
        } else {
            self.ctx.publish(RoomEvent::ViewersChanged {
                viewers: self.viewers(),
            });
        }
        if pending.sends_video {
            self.reflow().await;
        }
        let _ = pending.reply.send(Ok(JoinAnswer {
            session,
            secret: pending.secret,
            sdp,
            kind: pending.kind,
            etag,
        }));
        // Events that came before the answer, handled now, in the order they came.
        for kind in pending.early {
            self.on_session_event(session, kind).await;
        }
        self.update_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{self, MediaOffer, OfferedFormat, Transport};

    fn offer(lines: &[(MediaKind, Direction, &[&str])]) -> OfferSummary {
        OfferSummary {
            media: lines
                .iter()
                .enumerate()
                .map(|(i, (kind, direction, codecs))| MediaOffer {
                    kind: *kind,
                    mid: Some(i.to_string()),
                    direction: *direction,
                    codecs: codecs.iter().map(|c| c.to_string()).collect(),
                    formats: codecs
                        .iter()
                        .zip(96u8..)
                        .map(|(c, payload_type)| OfferedFormat {
                            payload_type,
                            name: c.to_string(),
                            clock_rate: 90000,
                            fmtp: if c.eq_ignore_ascii_case("H264") {
                                "packetization-mode=1".into()
                            } else {
                                String::new()
                            },
                        })
                        .collect(),
                    transport: Transport::Bundled { bundle_only: false },
                    ssrcs: vec![1],
                    rids: false,
                    mid_extension: None,
                    audio_level_extension: None,
                })
                .collect(),
            bundle_groups: vec![],
        }
    }

    #[test]
    fn whip_sendrecv_is_a_participant_and_sendonly_a_contributor() {
        let o = offer(&[
            (MediaKind::Audio, Direction::SendRecv, &["opus"]),
            (MediaKind::Video, Direction::SendRecv, &["VP8"]),
        ]);
        assert_eq!(classify(false, &o).unwrap(), SessionKind::Participant);
        let o = offer(&[(MediaKind::Video, Direction::SendOnly, &["VP8"])]);
        assert_eq!(classify(false, &o).unwrap(), SessionKind::Contributor);
    }

    #[test]
    fn whep_must_be_recvonly_and_whip_must_send() {
        let recv = offer(&[(MediaKind::Video, Direction::RecvOnly, &["VP8"])]);
        assert_eq!(classify(true, &recv).unwrap(), SessionKind::Viewer);
        assert!(classify(false, &recv).is_err());
        let send = offer(&[(MediaKind::Video, Direction::SendRecv, &["VP8"])]);
        assert!(classify(true, &send).is_err());
    }

    #[test]
    fn codec_check_names_what_was_offered() {
        let o = offer(&[(
            MediaKind::Video,
            Direction::SendOnly,
            &["H264", "rtx", "AV1"],
        )]);
        let err =
            check_codecs(&o, |_, m| m.eq_ignore_ascii_case("video/VP8"), |_| true).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("H264, AV1"), "{text}");
        assert!(!text.contains("rtx"), "{text}");
        let ok = offer(&[(MediaKind::Video, Direction::SendRecv, &["H264", "VP8"])]);
        assert!(check_codecs(&ok, |_, m| m.eq_ignore_ascii_case("video/VP8"), |_| true).is_ok());
    }

    #[test]
    fn issue9_h264_needs_packetization_mode_1_and_its_declared_level_is_read() {
        let path = format!(
            "{}/tests/offers/webrtcbin-max-bundle-h264-participant.sdp",
            env!("CARGO_MANIFEST_DIR")
        );
        let sdp = std::fs::read_to_string(path).expect("captured offer");
        let offer = peer::inspect_offer(&sdp).unwrap();
        assert_eq!(choose_video_codec(&offer, |_| true), Some(VideoCodec::H264));
        assert_eq!(declared_h264_level(&offer), Some(Level(30)), "42c01e");
        // The same offer in packetization mode 0: tessera cannot send that.
        let mode0 =
            peer::inspect_offer(&sdp.replace("packetization-mode=1", "packetization-mode=0"))
                .unwrap();
        assert_eq!(choose_video_codec(&mode0, |_| true), None);
        let err = check_codecs(&mode0, |_, _| true, |_| true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("packetization-mode=1"), "{err}");
        // No profile-level-id: no declared level.
        let bare = sdp.replace("profile-level-id=42c01e;", "");
        assert_eq!(
            declared_h264_level(&peer::inspect_offer(&bare).unwrap()),
            None
        );
    }

    #[test]
    fn a_receiver_gets_the_first_codec_of_its_offer_the_room_encodes() {
        let o = offer(&[(MediaKind::Video, Direction::RecvOnly, &["H264", "VP8"])]);
        assert_eq!(choose_video_codec(&o, |_| true), Some(VideoCodec::H264));
        assert_eq!(
            choose_video_codec(&o, |c| c == VideoCodec::Vp8),
            Some(VideoCodec::Vp8)
        );
        let only = offer(&[(MediaKind::Video, Direction::RecvOnly, &["AV1", "H264"])]);
        assert_eq!(choose_video_codec(&only, |_| true), Some(VideoCodec::H264));
        assert_eq!(choose_video_codec(&only, |c| c == VideoCodec::Vp8), None);
        // A receive-only H.264 offer is refused where H.264 cannot be encoded.
        assert!(check_codecs(&only, |_, _| false, |c| c == VideoCodec::Vp8).is_err());
        assert!(check_codecs(&only, |_, _| false, |_| true).is_ok());
    }
}
