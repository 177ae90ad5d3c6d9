//! A bad network between clients and the server: a UDP relay in the middle namespace of a
//! [`TurnNet`](super::turn_net::TurnNet) that loses, delays and cuts packets, per session and
//! per direction, as `tc qdisc … netem` would on its veth links.
//!
//! Why not netem itself: this machine's kernel is built without it (`CONFIG_NET_SCH_NETEM`
//! is not set; `tc qdisc add dev lo root netem loss 5%` answers "Specified qdisc kind is
//! unknown"), and there is no kernel module to load. The relay does netem's work where the
//! veth links meet, on every packet of the path (ICE, DTLS, SRTP, SRTCP), with a seeded random
//! generator so a run can be repeated.
//!
//! ```text
//!   client ns                      middle ns (the test)                      server ns
//!   10.0.1.2 <-- veth --> 10.0.1.1:P  relay  10.0.2.1:* <-- veth --> 10.0.2.2:P tessera
//! ```
//!
//! The server advertises the relay's side as its address (`--public-ip 10.0.1.1`, ports from
//! `--udp-ports`), so a client's every packet to port P reaches the relay's socket on P, which
//! forwards it from a socket of its own to the server's P; the server learns that socket as a
//! peer-reflexive candidate and answers it, and the relay sends the answers back from P.
//!
//! It also counts retransmissions (the RTP header is not encrypted by SRTP): a packet of an
//! RTX payload type (RFC 4588), or an RTP packet whose SSRC and sequence number it has seen
//! before on the same path (a NACK answered on the media's own SSRC, RFC 4585).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// Which way a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
}

/// What happens to the packets of one direction of one session's path.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// The share of packets dropped at random, 0 to 1 (netem `loss`).
    pub loss: f64,
    /// Each packet is held for a random time, uniform between zero and twice this (netem
    /// `delay J J`: J on average, J either way), so packets overtake each other.
    pub jitter: Option<Duration>,
    /// Every packet dropped (a cable pulled).
    pub outage: bool,
}

/// Packets through one direction of one path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    pub forwarded: u64,
    pub dropped: u64,
    /// Retransmissions: RTX packets, and RTP packets seen again.
    pub retransmitted: u64,
    /// Of them, RTX packets.
    pub rtx: u64,
}

/// How many (SSRC, sequence) pairs a path remembers to spot retransmissions.
const SEEN: usize = 8192;

#[derive(Default)]
struct Path {
    impairment: Impairment,
    counts: PathCounts,
    seen: HashSet<(u32, u16)>,
    order: VecDeque<(u32, u16)>,
}

impl Path {
    /// Notes an RTP packet's identity; whether it was seen before.
    fn seen_before(&mut self, packet: &[u8]) -> bool {
        let Some(id) = rtp_identity(packet) else {
            return false;
        };
        if !self.seen.insert(id) {
            return true;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }
}

/// The RTX payload types of tessera's codec table.
const RTX_PAYLOAD_TYPES: [u8; 2] = [
    tessera::rtp::codecs::VP8_RTX.payload_type,
    tessera::rtp::codecs::H264_RTX.payload_type,
];

/// Whether `packet` is RTP of an RTX payload type.
fn is_rtx(packet: &[u8]) -> bool {
    rtp_identity(packet).is_some() && RTX_PAYLOAD_TYPES.contains(&(packet[1] & 0x7f))
}

/// An RTP (not RTCP, not STUN, not DTLS) packet's SSRC and sequence number.
fn rtp_identity(packet: &[u8]) -> Option<(u32, u16)> {
    // RFC 7983: 128..=191 is RTP or RTCP; RTCP's packet types 192..=223 fill the second byte.
    if packet.len() < 12 || !(128..=191).contains(&packet[0]) || (192..=223).contains(&packet[1]) {
        return None;
    }
    let sequence = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Some((ssrc, sequence))
}

struct Shared {
    paths: Mutex<HashMap<(u16, Direction), Path>>,
    random: Mutex<StdRng>,
}

impl Shared {
    /// What to do with `packet` on `port`'s path going `direction`: `None` drops it, else the
    /// delay to send it after.
    fn decide(&self, port: u16, direction: Direction, packet: &[u8]) -> Option<Duration> {
        let mut paths = self.paths.lock().unwrap_or_else(|p| p.into_inner());
        let path = paths.entry((port, direction)).or_default();
        let rtx = is_rtx(packet);
        if rtx || path.seen_before(packet) {
            path.counts.retransmitted += 1;
        }
        path.counts.rtx += u64::from(rtx);
        let i = path.impairment;
        let mut random = self.random.lock().unwrap_or_else(|p| p.into_inner());
        if i.outage || (i.loss > 0.0 && random.random::<f64>() < i.loss) {
            path.counts.dropped += 1;
            return None;
        }
        path.counts.forwarded += 1;
        Some(match i.jitter {
            Some(j) => j.mul_f64(2.0 * random.random::<f64>()),
            None => Duration::ZERO,
        })
    }
}

/// The relay: one socket per port of the server's range on the client side, one per client
/// towards the server. Stopped on drop.
pub struct Relay {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl Relay {
    /// Listens on `listen`:`ports` (this namespace's address towards the clients) and relays
    /// to `server`:the same port, from sockets bound to `upstream` (this namespace's address
    /// towards the server).
    pub async fn start(
        listen: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
        upstream: IpAddr,
        server: IpAddr,
        seed: u64,
    ) -> Result<Relay> {
        let shared = Arc::new(Shared {
            paths: Mutex::default(),
            random: Mutex::new(StdRng::seed_from_u64(seed)),
        });
        let mut tasks = JoinSet::new();
        for port in ports {
            let socket = UdpSocket::bind((listen, port))
                .await
                .with_context(|| format!("the relay binds {listen}:{port}"))?;
            let shared = shared.clone();
            tasks.spawn(relay_port(
                Arc::new(socket),
                SocketAddr::new(server, port),
                upstream,
                shared,
            ));
        }
        Ok(Relay { shared, tasks })
    }

    /// Applies `impairment` from now on to `port`'s path going `direction`.
    pub fn impair(&self, port: u16, direction: Direction, impairment: Impairment) {
        let mut paths = self.shared.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths.entry((port, direction)).or_default().impairment = impairment;
    }

    /// Packets through `port`'s path going `direction` so far.
    pub fn counts(&self, port: u16, direction: Direction) -> PathCounts {
        let paths = self.shared.paths.lock().unwrap_or_else(|p| p.into_inner());
        paths
            .get(&(port, direction))
            .map(|p| p.counts)
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Relays one port: the client side's packets to the server from a socket made on the first
/// one (and remade if another client takes the port after a session ended), the server's
/// answers back to the client that sent last.
async fn relay_port(
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    upstream: IpAddr,
    shared: Arc<Shared>,
) {
    let port = server.port();
    let mut buf = vec![0u8; 2048];
    let mut towards: Option<(SocketAddr, Arc<UdpSocket>, tokio::task::JoinHandle<()>)> = None;
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if towards
            .as_ref()
            .is_none_or(|(client, _, _)| *client != from)
        {
            if let Some((_, _, back)) = towards.take() {
                back.abort();
            }
            let Ok(up) = UdpSocket::bind((upstream, 0)).await else {
                continue;
            };
            if up.connect(server).await.is_err() {
                continue;
            }
            let up = Arc::new(up);
            let back = tokio::spawn(relay_back(
                up.clone(),
                socket.clone(),
                from,
                port,
                shared.clone(),
            ));
            towards = Some((from, up, back));
        }
        let Some((_, up, _)) = &towards else { continue };
        let packet = buf[..n].to_vec();
        if let Some(delay) = shared.decide(port, Direction::ToServer, &packet) {
            forward(delay, up, None, packet).await;
        }
    }
    if let Some((_, _, back)) = towards {
        back.abort();
    }
}

/// The server's packets on `up`, back to `client` through the client side's `socket`.
async fn relay_back(
    up: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    port: u16,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 2048];
    while let Ok(n) = up.recv(&mut buf).await {
        let packet = buf[..n].to_vec();
        if let Some(delay) = shared.decide(port, Direction::ToClient, &packet) {
            forward(delay, &socket, Some(client), packet).await;
        }
    }
}

/// Sends `packet` on `socket` (to `to`, or its connected peer): at once, in order, when not
/// delayed; else from a task that sleeps `delay` first (and may be overtaken, as with netem).
/// A delayed packet still in flight when the relay stops is sent anyway, within its delay.
async fn forward(
    delay: Duration,
    socket: &Arc<UdpSocket>,
    to: Option<SocketAddr>,
    packet: Vec<u8>,
) {
    async fn send(socket: &UdpSocket, to: Option<SocketAddr>, packet: &[u8]) {
        let _ = match to {
            Some(to) => socket.send_to(packet, to).await,
            None => socket.send(packet).await,
        };
    }
    if delay.is_zero() {
        send(socket, to, &packet).await;
    } else {
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            send(&socket, to, &packet).await;
        });
    }
}
