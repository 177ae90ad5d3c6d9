//! One `Config` for the whole server, merged from three places in rising priority: built-in
//! defaults (the named consts below), a TOML file (`--config`), then `TESSERA_*` environment
//! variables and command-line flags (clap reads both). `validate()` runs once at start-up so a
//! bad value stops the server with a sentence instead of failing later inside a room.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cli;
mod ice;
mod keys;
mod tls;

use cli::FileConfig;
pub use cli::{Cli, Command, ServeArgs, TokenArgs};
pub use keys::{api_keys, read_keys};
pub use tls::{AcmeConfig, DEFAULT_ACME_CACHE, LETS_ENCRYPT_DIRECTORY, TlsConfig, TlsMode};

use crate::types::{OutputKey, RecordingFormat, Tier, VideoCodec};

/// Where the HTTP interface listens by default.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Canvas of the mix: 720p, the size a laptop shows full-screen without upscaling artefacts.
pub const DEFAULT_WIDTH: u32 = 1280;
/// See [`DEFAULT_WIDTH`].
pub const DEFAULT_HEIGHT: u32 = 720;
/// Frame rate of the mix.
pub const DEFAULT_FPS: u32 = 30;
/// Bitrate of the mixed video, ~2 Mbit/s: enough for a 720p grid of talking heads.
pub const DEFAULT_VIDEO_KBPS: u32 = 2000;
/// Where recordings go, relative to the working directory.
pub const DEFAULT_RECORDINGS_DIR: &str = "recordings";
/// Bitrate of the low tier (half the canvas): a weak downlink or `?quality=low`.
pub const DEFAULT_LOW_VIDEO_KBPS: u32 = 600;
/// Bitrate of each mixed audio stream (Opus, 48 kHz, mono voice).
pub const DEFAULT_AUDIO_KBPS: u32 = 32;
/// A room holds at most this many sending sessions (tiles): the 4x4 grid.
pub const DEFAULT_MAX_PARTICIPANTS: usize = 16;
/// How long a room lives on after its last session left, so a quick rejoin finds it warm.
pub const DEFAULT_ROOM_LINGER_SECS: f64 = 30.0;
/// How long the server waits for ICE gathering before it answers with what it has.
pub const DEFAULT_GATHER_TIMEOUT_MS: u64 = 2000;
/// How long a drain (SIGTERM) waits for rooms to empty before it ends them.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// A range of UDP ports, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port.
    pub high: u16,
}

/// The settings of the mixed output of every room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixConfig {
    /// Canvas width in pixels.
    pub width: u32,
    /// Canvas height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate in kbit/s (VP8, high tier).
    pub video_kbps: u32,
    /// VP8 low tier bitrate in kbit/s.
    pub low_video_kbps: u32,
    /// H.264 high tier bitrate in kbit/s (`None`: as VP8).
    pub h264_video_kbps: Option<u32>,
    /// H.264 low tier bitrate in kbit/s (`None`: as VP8).
    pub h264_low_video_kbps: Option<u32>,
    /// Audio bitrate in kbit/s.
    pub audio_kbps: u32,
}

impl MixConfig {
    /// Width, height and bitrate (kbit/s) of one output of the ladder: the high tier is the
    /// canvas, the low tier half of it in each dimension (even sizes, as I420 wants).
    pub fn output(&self, key: OutputKey) -> (u32, u32, u32) {
        let (width, height) = match key.tier {
            Tier::High => (self.width, self.height),
            Tier::Low => ((self.width / 2) & !1, (self.height / 2) & !1),
        };
        let kbps = match (key.codec, key.tier) {
            (VideoCodec::Vp8, Tier::High) => self.video_kbps,
            (VideoCodec::Vp8, Tier::Low) => self.low_video_kbps,
            (VideoCodec::H264, Tier::High) => self.h264_video_kbps.unwrap_or(self.video_kbps),
            (VideoCodec::H264, Tier::Low) => {
                self.h264_low_video_kbps.unwrap_or(self.low_video_kbps)
            }
        };
        (width, height, kbps)
    }
}

/// How WebRTC transports are set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcConfig {
    /// Gather candidates on this address only.
    pub rtc_ip: Option<IpAddr>,
    /// Advertise this address (1:1 NAT).
    pub public_ip: Option<IpAddr>,
    /// Bind media sockets within this range.
    pub udp_ports: Option<PortRange>,
    /// Deadline for ICE gathering before answering.
    pub gather_timeout: Duration,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// WebRTC transport settings.
    pub rtc: RtcConfig,
    /// Mixed output settings.
    pub mix: MixConfig,
    /// Most sending sessions per room.
    pub max_participants: usize,
    /// Lifetime of an empty room.
    pub room_linger: Duration,
    /// How long a drain waits for rooms to empty (`--drain-timeout`).
    pub drain_timeout: Duration,
    /// Where `GET /metrics` is served alone (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Rooms with series of their own in `GET /metrics`.
    pub metrics_room_limit: usize,
    /// Where the rooms' events are POSTed (`--webhook-url`).
    pub webhook_urls: Vec<String>,
    /// Override directory for pipeline descriptions.
    pub pipelines_dir: Option<PathBuf>,
    /// Where recordings are written.
    pub recordings_dir: PathBuf,
    /// Record every room from its start.
    pub auto_record: Option<RecordingFormat>,
    /// The layout new rooms start with.
    pub default_layout: crate::room::layout::LayoutSpec,
    /// HTTPS.
    pub tls: TlsConfig,
    /// The keys access tokens are signed with (none: the server is open).
    pub api_keys: Vec<crate::auth::ApiKey>,
    /// Admission limits.
    pub limits: crate::admission::Limits,
    /// The STUN and TURN servers handed to clients.
    pub ice_servers: crate::ice_servers::IceServers,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid address"),
            rtc: RtcConfig {
                gather_timeout: Duration::from_millis(DEFAULT_GATHER_TIMEOUT_MS),
                ..RtcConfig::default()
            },
            mix: MixConfig {
                width: DEFAULT_WIDTH,
                height: DEFAULT_HEIGHT,
                fps: DEFAULT_FPS,
                video_kbps: DEFAULT_VIDEO_KBPS,
                low_video_kbps: DEFAULT_LOW_VIDEO_KBPS,
                h264_video_kbps: None,
                h264_low_video_kbps: None,
                audio_kbps: DEFAULT_AUDIO_KBPS,
            },
            max_participants: DEFAULT_MAX_PARTICIPANTS,
            room_linger: Duration::from_secs_f64(DEFAULT_ROOM_LINGER_SECS),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            metrics_listen: None,
            metrics_room_limit: crate::metrics::DEFAULT_ROOM_LIMIT,
            webhook_urls: Vec::new(),
            pipelines_dir: None,
            recordings_dir: PathBuf::from(DEFAULT_RECORDINGS_DIR),
            auto_record: None,
            default_layout: Default::default(),
            tls: TlsConfig::default(),
            api_keys: Vec::new(),
            limits: crate::admission::Limits::default(),
            ice_servers: crate::ice_servers::IceServers::default(),
        }
    }
}

impl Config {
    /// Merges defaults, the file named by `--config` (if any) and the flags/environment.
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(&args, &file)
    }

    /// The configuration a TOML file's `text` gives alone (no flags): what `--config` reads,
    /// checked the same way (the fuzz target `config` reads through here).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "-".into(),
            source: Box::new(source),
        })?;
        Config::merge(&ServeArgs::default(), &file)
    }

    fn merge(args: &ServeArgs, file: &FileConfig) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        // Flags (and env, which clap folds into them) win over the file.
        macro_rules! pick {
            ($field:ident) => {
                args.$field.clone().or(file.$field.clone())
            };
        }
        if let Some(v) = pick!(listen) {
            c.listen = v;
        }
        c.rtc.rtc_ip = pick!(rtc_ip);
        c.rtc.public_ip = pick!(public_ip);
        if let Some(v) = pick!(udp_ports) {
            c.rtc.udp_ports = Some(parse_port_range(&v)?);
        }
        if let Some(v) = pick!(width) {
            c.mix.width = v;
        }
        if let Some(v) = pick!(height) {
            c.mix.height = v;
        }
        if let Some(v) = pick!(fps) {
            c.mix.fps = v;
        }
        if let Some(v) = pick!(video_kbps) {
            c.mix.video_kbps = v;
        }
        if let Some(v) = pick!(low_video_kbps) {
            c.mix.low_video_kbps = v;
        }
        c.mix.h264_video_kbps = pick!(h264_video_kbps);
        c.mix.h264_low_video_kbps = pick!(h264_low_video_kbps);
        if let Some(v) = pick!(max_participants) {
            c.max_participants = v;
        }
        if let Some(v) = pick!(room_linger_secs) {
            if !(0.0..=86_400.0).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "room linger must be 0..=86400 seconds, got {v}"
                )));
            }
            c.room_linger = Duration::from_secs_f64(v);
        }
        if let Some(v) = pick!(drain_timeout) {
            c.drain_timeout = humantime::parse_duration(&v).map_err(|e| {
                ConfigError::Invalid(format!("--drain-timeout {v:?}: {e} (use e.g. 10m or 30s)"))
            })?;
        }
        c.metrics_listen = pick!(metrics_listen);
        let urls = if args.webhook_urls.is_empty() {
            file.webhook_urls.clone().unwrap_or_default()
        } else {
            args.webhook_urls.clone()
        };
        for url in &urls {
            let ok = url.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "--webhook-url {url:?}: give an http:// or https:// URL"
                )));
            }
        }
        c.webhook_urls = urls;
        if let Some(v) = pick!(metrics_room_limit) {
            c.metrics_room_limit = v;
        }
        let l = &mut c.limits;
        l.max_rooms = pick!(max_rooms).unwrap_or(l.max_rooms);
        l.max_sessions = pick!(max_sessions).unwrap_or(l.max_sessions);
        l.rate_per_sec = pick!(rate_per_sec).unwrap_or(l.rate_per_sec);
        l.rate_burst = pick!(rate_burst).unwrap_or(l.rate_burst);
        l.max_pending_per_addr = pick!(max_pending_per_addr).unwrap_or(l.max_pending_per_addr);
        l.max_streams_per_addr = pick!(max_streams_per_addr).unwrap_or(l.max_streams_per_addr);
        if let Some(percent) = pick!(max_load) {
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(ConfigError::Invalid(format!(
                    "--max-load is a percentage of all cores, 0 < load <= 100, got {percent}"
                )));
            }
            l.max_load = percent / 100.0;
        }
        for (name, v) in [
            ("max rooms", l.max_rooms),
            ("max sessions", l.max_sessions),
            ("rate per second", l.rate_per_sec as usize),
            ("rate burst", l.rate_burst as usize),
            ("max pending per address", l.max_pending_per_addr),
            ("max streams per address", l.max_streams_per_addr),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        c.pipelines_dir = pick!(pipelines_dir);
        if let Some(dir) = pick!(recordings_dir) {
            c.recordings_dir = dir;
        }
        if let Some(format) = pick!(auto_record) {
            c.auto_record = Some(format.parse().map_err(ConfigError::Invalid)?);
        }
        if let Some(layout) = pick!(default_layout) {
            c.default_layout = read_layout(&layout)?;
        }
        c.tls = tls::TlsArgs {
            cert: pick!(tls_cert),
            key: pick!(tls_key),
            self_signed: args.tls_self_signed || file.tls_self_signed.unwrap_or(false),
            acme_domains: or_file(&args.acme_domains, &file.acme_domains),
            acme_email: pick!(acme_email),
            acme_directory: pick!(acme_directory),
            acme_cache: pick!(acme_cache),
            acme_ca_roots: pick!(acme_ca_roots),
            redirect_port: pick!(http_redirect_port),
        }
        .into_config()?;
        c.api_keys = api_keys(
            args.api_key.clone(),
            args.api_secret.clone(),
            file.api_keys.clone().unwrap_or_default(),
        )?;
        let require_auth = args.require_auth || file.require_auth.unwrap_or(false);
        if require_auth && c.api_keys.is_empty() {
            return Err(ConfigError::Invalid(
                "--require-auth: no API key is configured (--api-key and --api-secret, or \
                 [[api_keys]] in the configuration file)"
                    .into(),
            ));
        }
        c.ice_servers = ice::IceArgs {
            stun_urls: or_file(&args.stun_urls, &file.stun_urls),
            turn_urls: or_file(&args.turn_urls, &file.turn_urls),
            turn_secret: pick!(turn_secret),
            turn_ttl: pick!(turn_ttl),
            turn_username: pick!(turn_username),
            turn_password: pick!(turn_password),
        }
        .into_config()?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every value is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.mix;
        // Even sizes: I420 and the VP8 encoder want them.
        if !(64..=3840).contains(&m.width) || !m.width.is_multiple_of(2) {
            return Err(ConfigError::Invalid(format!(
                "width must be even and 64..=3840, got {}",
                m.width
            )));
        }
        if !(64..=2160).contains(&m.height) || !m.height.is_multiple_of(2) {
            return Err(ConfigError::Invalid(format!(
                "height must be even and 64..=2160, got {}",
                m.height
            )));
        }
        if !(1..=60).contains(&m.fps) {
            return Err(ConfigError::Invalid(format!(
                "fps must be 1..=60, got {}",
                m.fps
            )));
        }
        for codec in VideoCodec::ALL {
            for tier in Tier::ALL {
                let kbps = m.output(OutputKey { codec, tier }).2;
                if !(50..=50_000).contains(&kbps) {
                    return Err(ConfigError::Invalid(format!(
                        "video bitrate ({} {}) must be 50..=50000 kbit/s, got {kbps}",
                        codec.name(),
                        tier.name()
                    )));
                }
            }
        }
        if !(1..=crate::room::layout::MAX_TILES).contains(&self.max_participants) {
            return Err(ConfigError::Invalid(format!(
                "max participants must be 1..={}, got {}",
                crate::room::layout::MAX_TILES,
                self.max_participants
            )));
        }
        if let Some(r) = self.rtc.udp_ports
            && r.low > r.high
        {
            return Err(ConfigError::Invalid(format!(
                "udp port range {}-{} is empty",
                r.low, r.high
            )));
        }
        if let Some(dir) = &self.pipelines_dir
            && !dir.is_dir()
        {
            return Err(ConfigError::Invalid(format!(
                "pipelines dir {} is not a directory",
                dir.display()
            )));
        }
        Ok(())
    }
}

/// A repeatable flag's values, or the file's list when no flag was given.
fn or_file(flags: &[String], file: &Option<Vec<String>>) -> Vec<String> {
    if flags.is_empty() {
        file.clone().unwrap_or_default()
    } else {
        flags.to_vec()
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Parses `LOW-HIGH`.
pub fn parse_port_range(s: &str) -> Result<PortRange, ConfigError> {
    let bad = || ConfigError::Invalid(format!("udp ports must look like 40000-40999, got {s:?}"));
    let (low, high) = s.split_once('-').ok_or_else(bad)?;
    let low: u16 = low.trim().parse().map_err(|_| bad())?;
    let high: u16 = high.trim().parse().map_err(|_| bad())?;
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(PortRange { low, high })
}

/// `--default-layout`: a preset's name, or a file with a layout's JSON.
fn read_layout(arg: &str) -> Result<crate::room::layout::LayoutSpec, ConfigError> {
    use crate::room::layout::{LayoutSpec, Preset};
    if let Ok(preset) = serde_json::from_value::<Preset>(serde_json::Value::from(arg)) {
        return Ok(LayoutSpec::preset(preset));
    }
    let json = std::fs::read(arg).map_err(|e| {
        ConfigError::Invalid(format!(
            "--default-layout {arg:?} is neither a preset (grid, speaker, single, pip, \
             presentation) nor a readable file: {e}"
        ))
    })?;
    LayoutSpec::parse(&json)
        .map_err(|e| ConfigError::Invalid(format!("--default-layout {arg}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses_and_rejects() {
        assert_eq!(
            parse_port_range("40000-40010").unwrap(),
            PortRange {
                low: 40000,
                high: 40010
            }
        );
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("x-1").is_err());
        assert!(parse_port_range("100").is_err());
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("tessera-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(&file, "fps = 25\nwidth = 640\nheight = 360\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            fps: Some(15),
            ..ServeArgs::default()
        };
        let c = Config::from_args(args).unwrap();
        assert_eq!((c.mix.width, c.mix.height, c.mix.fps), (640, 360, 15));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = std::env::temp_dir().join(format!("tessera-cfg2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(&file, "fsp = 25\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Config::from_args(args),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn odd_width_is_invalid() {
        let mut c = Config::default();
        c.mix.width = 641;
        assert!(c.validate().is_err());
    }

    #[test]
    fn default_layout_is_a_preset_name_or_a_json_file() {
        use crate::room::layout::Preset;
        assert_eq!(
            read_layout("speaker").unwrap().preset,
            Some(Preset::Speaker)
        );
        let dir = std::env::temp_dir().join(format!("tessera-cfg3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("layout.json");
        std::fs::write(&file, r#"{"preset": "pip", "labels": false}"#).unwrap();
        let spec = read_layout(file.to_str().unwrap()).unwrap();
        assert_eq!((spec.preset, spec.labels), (Some(Preset::Pip), false));
        std::fs::write(&file, r#"{"preset": "pip", "colour": 1}"#).unwrap();
        let err = read_layout(file.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
        let err = read_layout("mosaic").unwrap_err().to_string();
        assert!(err.contains("neither a preset"), "{err}");
        let args = ServeArgs {
            default_layout: Some("single".into()),
            ..ServeArgs::default()
        };
        let c = Config::from_args(args).unwrap();
        assert_eq!(c.default_layout.preset, Some(Preset::Single));
    }
}
