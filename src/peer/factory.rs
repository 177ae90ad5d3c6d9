//! Building peer connections: the transport settings (ICE timeouts and pacing, mDNS, the
//! addresses and ports to gather on), the codecs and interceptors, and the answer to an offer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, RTCSessionDescription, SettingEngineBuilder,
};

use super::codecs::{add_outgoing, fix_payload_types, interceptors, register_codecs};
use super::handler::Handler;
use super::{
    Peer, PeerError, PeerEvent, SendPlan, answer, keyframe_interceptor, offer, routing, rtc_err,
    stream_router,
};
use crate::config::RtcConfig;
use crate::metrics::{self, Live};
use crate::types::{MediaKind, SessionId};

/// How many ports of a configured range to try before giving up.
const PORT_ATTEMPTS: usize = 16;

/// How often the ICE agent re-checks its candidate pairs while no pair is selected. Joining does
/// not wait on this: a check from the client makes the agent answer and check back at once
/// (RFC 8445 §7.3.1.4, triggered checks), and the client nominates. What it paces is a session
/// that never connects, whose agent wakes at this period until it fails: at 50 ms that cost a
/// waiting room ~0.2% of a core.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Builds peer connections with the server's transport settings.
#[derive(Debug, Clone)]
pub struct PeerFactory {
    config: RtcConfig,
    /// Whether this host can join the mDNS multicast group (resolving browsers' `.local`
    /// candidates). Where it cannot (a network namespace with only `lo`, some containers),
    /// webrtc-rs's driver would fail at start, so mDNS is off; checks find the peer anyway.
    mdns: bool,
}

impl PeerFactory {
    /// A factory with the server's transport settings.
    pub fn new(config: RtcConfig) -> PeerFactory {
        let mdns = match rtc::mdns::MulticastSocket::new().into_std() {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    "no multicast here ({e}): browsers' mDNS (.local) candidates will not be \
                     resolved; peer-reflexive candidates from connectivity checks still connect"
                );
                false
            }
        };
        PeerFactory { config, mdns }
    }

    /// Answers `offer` for `session`: builds the connection, adds the tracks of `plan`, gathers
    /// candidates (bounded by the configured deadline) and returns the peer with the complete
    /// answer SDP, candidates included, so clients that do not trickle can connect.
    pub async fn answer(
        &self,
        session: SessionId,
        offer: &str,
        plan: SendPlan,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<(Peer, String), PeerError> {
        let summary = offer::inspect_offer(offer)?;
        let routes = routing::RouteTable::for_offer(&summary);
        let audio_level = summary
            .first(MediaKind::Audio)
            .and_then(|m| m.audio_level_extension);
        // RTX only where every stream declares its SSRCs: webrtc-rs pairs a repair stream
        // with its media by `a=ssrc-group:FID`, so a routed line (`routing`) or a RID
        // simulcast would have its retransmissions dropped instead.
        let rtx = routes.is_none() && !summary.media.iter().any(|m| m.rids);
        let (peer, mut gathered) = self
            .new_peer(session, events, routes, audio_level, rtx)
            .await?;
        let result = async {
            let offer = offer::for_webrtc_rs(offer, &summary);
            let offer = RTCSessionDescription::offer(offer.into_owned())
                .map_err(|e| PeerError::BadOffer(e.to_string()))?;
            peer.pc
                .set_remote_description(offer)
                .await
                .map_err(|e| PeerError::BadOffer(e.to_string()))?;
            let mut outgoing = Vec::new();
            for (kind, wanted) in [
                (MediaKind::Video, plan.video),
                (MediaKind::Audio, plan.audio),
            ] {
                if wanted {
                    outgoing
                        .push(add_outgoing(&peer.pc, session, kind, plan.video_codec, None).await?);
                }
            }
            let answer = peer
                .pc
                .create_answer(None)
                .await
                .map_err(rtc_err("creating the answer"))?;
            peer.pc
                .set_local_description(answer)
                .await
                .map_err(rtc_err("setting the answer"))?;
            fix_payload_types(&peer.pc, &mut outgoing).await;
            let sdp =
                gathered_description(&peer.pc, &mut gathered, self.config.gather_timeout).await?;
            let parameters = answer::AnswerParameters {
                h264_level: plan.h264_level,
                // webrtc-rs 0.21.1 ignores its own 1:1 NAT setting; the answer says it.
                public_ip: self.config.public_ip,
            };
            Ok::<_, PeerError>((outgoing, answer::rewrite(&sdp, &summary, parameters)))
        }
        .await;
        peer.settle(result).await
    }

    /// A connection for `session`; `routes` places the streams the offer declared no SSRC for.
    async fn new_peer(
        &self,
        session: SessionId,
        events: mpsc::Sender<PeerEvent>,
        routes: Option<routing::RouteTable>,
        audio_level_extension: Option<u8>,
        rtx: bool,
    ) -> Result<(Peer, watch::Receiver<bool>), PeerError> {
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            session,
            events: events.clone(),
            gathered: gathered_tx,
            audio_level_extension,
        });
        let (pc, router) = self.build(handler, routes, rtx).await?;
        let mut peer = Peer {
            session,
            pc: Arc::new(pc),
            outgoing: Vec::new(),
            remote_video: None,
            router_feedback: None,
            uplink: watch::channel(None).0,
            routed_dropped: None,
            events,
            tasks: JoinSet::new(),
            // The negotiation runs in the session's span (the room made it).
            span: tracing::Span::current(),
            lagged: Arc::new(AtomicU64::new(0)),
            switches: Default::default(),
            _live: Live::new(&metrics::PEERS),
        };
        if let Some(router) = router {
            peer.announce_routed_streams(router);
        }
        Ok((peer, gathered_rx))
    }

    async fn build(
        &self,
        handler: Arc<Handler>,
        routes: Option<routing::RouteTable>,
        rtx: bool,
    ) -> Result<
        (
            impl PeerConnection + use<>,
            Option<stream_router::RouterHandle>,
        ),
        PeerError,
    > {
        let mut settings = SettingEngineBuilder::new()
            // Notice a vanished peer within seconds, not the default half minute: its tile
            // should not stay frozen on everyone's screen.
            .with_ice_timeouts(
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(8)),
                Some(Duration::from_secs(2)),
            )
            .with_ice_connection_attempts(Some(CHECK_INTERVAL), Some(25));
        if !self.mdns {
            settings = settings.with_multicast_dns_mode(MulticastDnsMode::Disabled);
        }
        let ip = self.config.rtc_ip;
        if ip.is_some_and(|ip| ip.is_loopback()) {
            // Asked for explicitly (tests, a same-host proxy): loopback is then the only address.
            settings = settings.with_include_loopback_candidate(true);
        }
        let settings = settings.build();

        let bind_ip: IpAddr = ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let ports: Vec<u16> = match self.config.udp_ports {
            None => vec![0],
            Some(range) => {
                // Start at a random port of the range so concurrent joins rarely collide.
                let span = (range.high - range.low) as usize + 1;
                let start = rand::random::<u32>() as usize % span;
                (0..span.min(PORT_ATTEMPTS))
                    .map(|i| range.low + ((start + i) % span) as u16)
                    .collect()
            }
        };
        let mut last_err = None;
        for port in ports {
            // Neither the engine nor the registry is Clone: each attempt builds its own.
            let mut media_engine = MediaEngine::default();
            register_codecs(&mut media_engine, rtx)?;
            let registry = interceptors(&mut media_engine)?;
            let mut registry = keyframe_interceptor::register(registry);
            let mut router = None;
            if let Some(routes) = &routes {
                let (interceptor, handle) = stream_router::StreamRouter::new(routes.clone());
                registry = registry.with(Slot::from(stream_router::SLOT), interceptor);
                router = Some(handle);
            }
            let built = PeerConnectionBuilder::new()
                .with_media_engine(media_engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings.clone())
                .with_handler(handler.clone())
                .with_udp_addrs(vec![SocketAddr::new(bind_ip, port)])
                .build()
                .await;
            match built {
                Ok(pc) => return Ok((pc, router)),
                Err(e) => last_err = Some(e),
            }
        }
        Err(PeerError::Rtc {
            context: "binding a media socket",
            message: last_err.map(|e| e.to_string()).unwrap_or_default(),
        })
    }
}

/// Waits (bounded) for ICE gathering, then returns the local description with its candidates.
async fn gathered_description(
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut watch::Receiver<bool>,
    deadline: Duration,
) -> Result<String, PeerError> {
    if tokio::time::timeout(deadline, gathered.wait_for(|done| *done))
        .await
        .is_err()
    {
        tracing::warn!("ICE gathering took over {deadline:?}; going on with what we have");
    }
    Ok(pc
        .local_description()
        .await
        .ok_or(PeerError::Rtc {
            context: "reading the local description",
            message: "none".into(),
        })?
        .sdp)
}
