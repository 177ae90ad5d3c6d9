//! The command line (clap) and the TOML file (serde): the same settings, all optional, merged
//! by [`super::Config::from_args`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "tessera: a WebRTC conference server that mixes (MCU)"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve rooms over WHIP/WHEP.
    Serve(Box<ServeArgs>),
    /// Print an access token (signed with the same keys `serve` uses).
    Token(TokenArgs),
}

/// Flags of `tessera token`.
#[derive(Debug, Default, Args)]
pub struct TokenArgs {
    /// The TOML file `serve` reads (for its keys).
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The key to sign with (default: the only or first configured).
    #[arg(long, env = "TESSERA_API_KEY")]
    pub api_key: Option<String>,
    /// The secret of `--api-key`.
    #[arg(long, env = "TESSERA_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// The room the token is for (`*`: every room).
    #[arg(long)]
    pub room: Option<String>,
    /// Who it is for: sessions made with it are this identity's own.
    #[arg(long)]
    pub identity: Option<String>,
    /// The name shown in the room.
    #[arg(long)]
    pub name: Option<String>,
    /// What it allows: join, contribute, view, record or admin (repeatable).
    #[arg(long = "grant")]
    pub grants: Vec<String>,
    /// How long it is valid (e.g. 6h, 30m, 2d).
    #[arg(long, default_value = "6h")]
    pub ttl: String,
    /// A server administrator's token: every room, the admin grant.
    #[arg(long)]
    pub admin: bool,
}

/// Flags of `tessera serve`; each can also come from `TESSERA_<NAME>` or from the TOML file.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The log's format on stderr: `text` (for people) or `json` (one object per line, with
    /// the `room` and `session` of the work in its spans).
    #[arg(long, env = "TESSERA_LOG_FORMAT", value_parser = ["text", "json"], default_value = "text")]
    pub log_format: String,
    /// Address and port of the HTTP interface.
    #[arg(long, env = "TESSERA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The only local address ICE gathers candidates on (default: every non-loopback interface).
    #[arg(long, env = "TESSERA_RTC_IP")]
    pub rtc_ip: Option<IpAddr>,
    /// The public address of a 1:1 NAT (cloud hosts): advertised instead of the local one.
    #[arg(long, env = "TESSERA_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// UDP port range for media, as LOW-HIGH (default: ephemeral ports).
    #[arg(long, env = "TESSERA_UDP_PORTS")]
    pub udp_ports: Option<String>,
    /// Width of the mixed video.
    #[arg(long, env = "TESSERA_WIDTH")]
    pub width: Option<u32>,
    /// Height of the mixed video.
    #[arg(long, env = "TESSERA_HEIGHT")]
    pub height: Option<u32>,
    /// Frame rate of the mixed video.
    #[arg(long, env = "TESSERA_FPS")]
    pub fps: Option<u32>,
    /// Bitrate of the mixed video in kbit/s (the high tier, VP8).
    #[arg(long, env = "TESSERA_VIDEO_KBPS")]
    pub video_kbps: Option<u32>,
    /// Bitrate of the low tier (half the canvas) in kbit/s (VP8).
    #[arg(long, env = "TESSERA_LOW_VIDEO_KBPS")]
    pub low_video_kbps: Option<u32>,
    /// Bitrate of the H.264 high tier in kbit/s (default: as VP8's).
    #[arg(long, env = "TESSERA_H264_VIDEO_KBPS")]
    pub h264_video_kbps: Option<u32>,
    /// Bitrate of the H.264 low tier in kbit/s (default: as VP8's).
    #[arg(long, env = "TESSERA_H264_LOW_VIDEO_KBPS")]
    pub h264_low_video_kbps: Option<u32>,
    /// Most sending sessions (tiles) in one room.
    #[arg(long, env = "TESSERA_MAX_PARTICIPANTS")]
    pub max_participants: Option<usize>,
    /// Seconds a room lives on after it became empty.
    #[arg(long, env = "TESSERA_ROOM_LINGER_SECS")]
    pub room_linger_secs: Option<f64>,
    /// How long a drain (the first SIGTERM or SIGINT) waits for rooms to empty before it
    /// ends them, e.g. `10m` (the default) or `30s`.
    #[arg(long, env = "TESSERA_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<String>,
    /// POST the rooms' events (JSON, signed with the API secret) to this URL; repeat for more.
    #[arg(
        long = "webhook-url",
        env = "TESSERA_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub webhook_urls: Vec<String>,
    /// Serve `GET /metrics` (Prometheus) on this address too, alone and without a token (for
    /// a monitoring network); on the main interface it needs an administrator's token.
    #[arg(long, env = "TESSERA_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Rooms with series of their own in `GET /metrics` (default 100); rooms beyond share the
    /// label `room="_other"`, so the number of series stays bounded.
    #[arg(long, env = "TESSERA_METRICS_ROOM_LIMIT")]
    pub metrics_room_limit: Option<usize>,
    /// Most rooms on the server (default 100).
    #[arg(long, env = "TESSERA_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    /// Most sessions on the server, joined or joining (default 500).
    #[arg(long, env = "TESSERA_MAX_SESSIONS")]
    pub max_sessions: Option<usize>,
    /// POST and PATCH requests per second from one address (default 10).
    #[arg(long, env = "TESSERA_RATE_PER_SEC")]
    pub rate_per_sec: Option<u32>,
    /// How many of them may come at once (default 30).
    #[arg(long, env = "TESSERA_RATE_BURST")]
    pub rate_burst: Option<u32>,
    /// Sessions not yet connected from one address (default 20).
    #[arg(long, env = "TESSERA_MAX_PENDING_PER_ADDR")]
    pub max_pending_per_addr: Option<usize>,
    /// Event streams open from one address (default 20).
    #[arg(long, env = "TESSERA_MAX_STREAMS_PER_ADDR")]
    pub max_streams_per_addr: Option<usize>,
    /// Percent of all cores the server may use before new sessions get 503 (default 85).
    #[arg(long, env = "TESSERA_MAX_LOAD")]
    pub max_load: Option<f64>,
    /// A directory whose `*.pipeline` files override the embedded GStreamer descriptions.
    #[arg(long, env = "TESSERA_PIPELINES_DIR")]
    pub pipelines_dir: Option<PathBuf>,
    /// Where recordings are written (one folder per room).
    #[arg(long, env = "TESSERA_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Record every room from its start, in this format (`webm` or `mp4`).
    #[arg(long, env = "TESSERA_AUTO_RECORD")]
    pub auto_record: Option<String>,
    /// The layout of new rooms: a preset (`grid`, `speaker`, `single`, `pip`, `presentation`)
    /// or a JSON file with a layout as `PUT /rooms/{room}/layout` takes it (default grid).
    #[arg(long, env = "TESSERA_DEFAULT_LAYOUT")]
    pub default_layout: Option<String>,

    /// HTTPS with this PEM certificate chain (and `--tls-key`); a changed file (a renewal) is
    /// picked up by new connections without a restart.
    #[arg(long, env = "TESSERA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "TESSERA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// HTTPS with a self-signed certificate for localhost, 127.0.0.1 and the `--rtc-ip` and
    /// `--public-ip` addresses (a trial on a LAN); its SHA-256 fingerprint is logged at start.
    #[arg(long, env = "TESSERA_TLS_SELF_SIGNED")]
    pub tls_self_signed: bool,
    /// HTTPS with a certificate for this name obtained over ACME (RFC 8555, TLS-ALPN-01 on
    /// the HTTPS port) and renewed before it expires; repeat for more names.
    #[arg(
        long = "acme-domain",
        env = "TESSERA_ACME_DOMAINS",
        value_delimiter = ','
    )]
    pub acme_domains: Vec<String>,
    /// The contact address given to the ACME server (expiry warnings go there).
    #[arg(long, env = "TESSERA_ACME_EMAIL")]
    pub acme_email: Option<String>,
    /// The ACME directory (default: Let's Encrypt's production directory).
    #[arg(long, env = "TESSERA_ACME_DIRECTORY")]
    pub acme_directory: Option<String>,
    /// Where the ACME account and certificates are kept between runs.
    #[arg(long, env = "TESSERA_ACME_CACHE")]
    pub acme_cache: Option<PathBuf>,
    /// PEM roots to trust for the ACME directory's own HTTPS (a private ACME server such as
    /// pebble); public directories need none.
    #[arg(long, env = "TESSERA_ACME_CA_ROOTS")]
    pub acme_ca_roots: Option<PathBuf>,
    /// Also listen on this port (same address) with plain HTTP that redirects to HTTPS.
    #[arg(long, env = "TESSERA_HTTP_REDIRECT_PORT")]
    pub http_redirect_port: Option<u16>,

    /// Require access tokens signed with this key's secret (the TOML file may list several
    /// keys as `[[api_keys]]`); without any key the server is open to anyone.
    #[arg(long, env = "TESSERA_API_KEY")]
    pub api_key: Option<String>,
    /// The secret of `--api-key` (at least 32 characters).
    #[arg(long, env = "TESSERA_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Refuse to start without a key (a server that must never run open).
    #[arg(long, env = "TESSERA_REQUIRE_AUTH")]
    pub require_auth: bool,

    /// A STUN server handed to clients (`stun:host:port`); repeat for more.
    #[arg(long = "stun-url", env = "TESSERA_STUN_URLS", value_delimiter = ',')]
    pub stun_urls: Vec<String>,
    /// A TURN relay handed to clients (`turn:host:3478?transport=udp`,
    /// `turn:host:3478?transport=tcp`, `turns:host:443?transport=tcp`); repeat for more.
    #[arg(long = "turn-url", env = "TESSERA_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): relay credentials are minted per
    /// caller and expire after `--turn-ttl`.
    #[arg(long, env = "TESSERA_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long minted relay credentials are valid (default 24h).
    #[arg(long, env = "TESSERA_TURN_TTL")]
    pub turn_ttl: Option<String>,
    /// One static relay account for everyone, instead of `--turn-secret`.
    #[arg(long, env = "TESSERA_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// The password of `--turn-username`.
    #[arg(long, env = "TESSERA_TURN_PASSWORD", hide_env_values = true)]
    pub turn_password: Option<String>,
}

/// The same settings as they may appear in the TOML file (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<SocketAddr>,
    pub(super) rtc_ip: Option<IpAddr>,
    pub(super) public_ip: Option<IpAddr>,
    pub(super) udp_ports: Option<String>,
    pub(super) width: Option<u32>,
    pub(super) height: Option<u32>,
    pub(super) fps: Option<u32>,
    pub(super) video_kbps: Option<u32>,
    pub(super) low_video_kbps: Option<u32>,
    pub(super) h264_video_kbps: Option<u32>,
    pub(super) h264_low_video_kbps: Option<u32>,
    pub(super) max_participants: Option<usize>,
    pub(super) room_linger_secs: Option<f64>,
    pub(super) drain_timeout: Option<String>,
    pub(super) metrics_listen: Option<std::net::SocketAddr>,
    pub(super) webhook_urls: Option<Vec<String>>,
    pub(super) metrics_room_limit: Option<usize>,
    pub(super) max_rooms: Option<usize>,
    pub(super) max_sessions: Option<usize>,
    pub(super) rate_per_sec: Option<u32>,
    pub(super) rate_burst: Option<u32>,
    pub(super) max_pending_per_addr: Option<usize>,
    pub(super) max_streams_per_addr: Option<usize>,
    pub(super) max_load: Option<f64>,
    pub(super) pipelines_dir: Option<PathBuf>,
    pub(super) recordings_dir: Option<PathBuf>,
    pub(super) auto_record: Option<String>,
    pub(super) default_layout: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_self_signed: Option<bool>,
    pub(super) acme_domains: Option<Vec<String>>,
    pub(super) acme_email: Option<String>,
    pub(super) acme_directory: Option<String>,
    pub(super) acme_cache: Option<PathBuf>,
    pub(super) acme_ca_roots: Option<PathBuf>,
    pub(super) http_redirect_port: Option<u16>,
    pub(super) api_keys: Option<Vec<crate::auth::ApiKey>>,
    pub(super) require_auth: Option<bool>,
    pub(super) stun_urls: Option<Vec<String>>,
    pub(super) turn_urls: Option<Vec<String>>,
    pub(super) turn_secret: Option<String>,
    pub(super) turn_ttl: Option<String>,
    pub(super) turn_username: Option<String>,
    pub(super) turn_password: Option<String>,
}
