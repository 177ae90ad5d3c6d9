//! A network where clients cannot reach the server except through a TURN relay: three
//! namespaces, all made by the test inside its own ([`super::netns::isolated`]) and gone with
//! it.
//!
//! ```text
//!   client ns                 turn ns (the test itself)              server ns
//!   10.0.1.2  <-- veth -->  10.0.1.1   coturn   10.0.2.1  <-- veth -->  10.0.2.2 tessera
//! ```
//!
//! The turn namespace does not forward, so the client has no route to the server: its media
//! can only go through coturn, which listens towards clients and relays from its address
//! towards the server. Its HTTP goes through a TCP forwarder in the turn namespace (the way a
//! firewall lets HTTPS out and drops UDP). Every address is inside these namespaces.
//!
//! A client runs in the client namespace on a thread of its own ([`NsRuntime`]): a socket
//! belongs to the namespace of the thread that made it, so everything that thread's runtime
//! opens is the client's.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{JoinOptions, eventually};

/// coturn's address towards the clients (the TURN URL's host).
pub const TURN_CLIENT_SIDE: &str = "10.0.1.1";
/// The client's address.
pub const CLIENT: &str = "10.0.1.2";
/// coturn's address towards the server (its relay address).
pub const TURN_SERVER_SIDE: &str = "10.0.2.1";
/// The server's address.
pub const SERVER: &str = "10.0.2.2";
/// coturn's listening port.
pub const TURN_PORT: u16 = 3478;

/// How long coturn may take to listen after start.
const STARTUP: Duration = Duration::from_secs(10);

/// A network namespace held open by a sleeping process (killed on drop, which ends the
/// namespace and its end of each veth pair).
pub struct Namespace {
    holder: Child,
}

impl Namespace {
    async fn new() -> Result<Namespace> {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .context("starting a namespace holder (unshare)")?;
        let ns = Namespace { holder };
        // unshare(2) runs just after the spawn: until then the pid is still in ours.
        let ours = std::fs::read_link("/proc/self/ns/net")?;
        let path = ns.path();
        eventually(
            Duration::from_secs(5),
            "the namespace holder unshares",
            || {
                let ours = ours.clone();
                let path = path.clone();
                async move { Ok(std::fs::read_link(&path).ok().filter(|p| *p != ours)) }
            },
        )
        .await?;
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The pid whose namespace this is.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.pid())
    }

    /// Runs a command inside, to completion.
    pub fn run(&self, args: &[&str]) -> Result<()> {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", self.path()))
            .arg("--")
            .args(args)
            .status()
            .with_context(|| format!("running {args:?} in a namespace"))?;
        ensure!(status.success(), "{args:?} in a namespace: {status}");
        Ok(())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The client and server namespaces, linked to this (the turn) namespace.
pub struct TurnNet {
    /// Where clients run.
    pub client: Namespace,
    /// Where tessera runs.
    pub server: Namespace,
}

impl TurnNet {
    /// Builds both namespaces and their links (inside the test's own namespace only).
    pub async fn build() -> Result<TurnNet> {
        let client = Namespace::new().await?;
        let server = Namespace::new().await?;
        link(&client, "tc", "ct", TURN_CLIENT_SIDE, CLIENT)?;
        link(&server, "ts", "st", TURN_SERVER_SIDE, SERVER)?;
        // No forwarding here (a new namespace's default): the client cannot reach the server.
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
        ensure!(
            forwarding.trim() == "0",
            "the turn namespace forwards packets"
        );
        Ok(TurnNet { client, server })
    }
}

/// A veth pair: `here` in this namespace with `here_ip`, `there` in `ns` with `there_ip`.
fn link(ns: &Namespace, here: &str, there: &str, here_ip: &str, there_ip: &str) -> Result<()> {
    let pid = ns.pid().to_string();
    ip(&[
        "link", "add", here, "type", "veth", "peer", "name", there, "netns", &pid,
    ])?;
    ip(&["addr", "add", &format!("{here_ip}/24"), "dev", here])?;
    ip(&["link", "set", here, "up"])?;
    ns.run(&["ip", "addr", "add", &format!("{there_ip}/24"), "dev", there])?;
    ns.run(&["ip", "link", "set", there, "up"])
}

fn ip(args: &[&str]) -> Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .with_context(|| format!("ip {args:?}"))?;
    ensure!(status.success(), "ip {args:?}: {status}");
    Ok(())
}

/// Options for a client in the turn namespace, which routes to the server: it reaches the
/// server directly, bound to the turn namespace's address towards it.
pub fn direct() -> JoinOptions {
    JoinOptions {
        bind: Some(format!("{TURN_SERVER_SIDE}:0")),
        ..JoinOptions::default()
    }
}

/// A tokio runtime on a thread of its own inside a namespace: what runs on it opens its
/// sockets there. Stopped (and its tasks dropped) on drop.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Starts the thread, moved into `ns`'s network namespace before it makes its runtime.
    pub fn enter(ns: &Namespace) -> Result<NsRuntime> {
        let file = std::fs::File::open(ns.path()).context("opening the namespace")?;
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("netns-client".into())
            .spawn(move || {
                // SAFETY: setns on this thread only, with a namespace file we hold open.
                let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if entered != 0 {
                    let _ = handle_tx.send(Err(std::io::Error::last_os_error().to_string()));
                    return;
                }
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // Drives every task spawned on it until told to stop.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .context("starting the namespace's thread")?;
        let handle = match handle_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => bail!("entering the namespace: {e}"),
            Err(e) => bail!("the namespace's thread did not start: {e}"),
        };
        Ok(NsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `future` on the namespace's runtime and waits for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        self.handle
            .spawn(future)
            .await
            .context("the task in the namespace panicked")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Forwards TCP connections from `listen` (an address of this namespace) to `to`: the client's
/// way to the server's HTTP. Stopped on drop.
pub struct Forwarder {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Starts it on `ip:0`.
    pub async fn start(ip: &str, to: SocketAddr) -> Result<Forwarder> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Forwarder { addr, task })
    }

    /// The server's base URL as the client sees it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A real coturn (Debian's `turnserver`) in this namespace, with `use-auth-secret`: listening
/// towards the clients, relaying towards the server, and allowed to relay to the server's
/// address only (the private ranges denied, as CVE-2020-26262 teaches). Killed on drop.
pub struct Coturn {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Coturn {
    /// Starts it with `secret`, its files in `dir`, and waits until it listens.
    pub async fn start(dir: &Path, secret: &str) -> Result<Coturn> {
        let config = format!(
            "listening-ip={TURN_CLIENT_SIDE}\n\
             relay-ip={TURN_SERVER_SIDE}\n\
             listening-port={TURN_PORT}\n\
             min-port=49152\n\
             max-port=49407\n\
             realm=tessera.test\n\
             use-auth-secret\n\
             static-auth-secret={secret}\n\
             fingerprint\n\
             no-tls\n\
             no-dtls\n\
             no-cli\n\
             no-multicast-peers\n\
             denied-peer-ip=10.0.0.0-10.255.255.255\n\
             allowed-peer-ip={SERVER}\n\
             pidfile={dir}/turnserver.pid\n\
             userdb={dir}/turndb\n\
             log-file=stdout\n\
             simple-log\n\
             verbose\n",
            dir = dir.display()
        );
        let path = dir.join("turnserver.conf");
        std::fs::write(&path, config)?;
        let mut child = Command::new("turnserver")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting coturn (turnserver, Debian's coturn package)")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    eprintln!("[coturn] {line}");
                    log.lock().expect("coturn log").push(line);
                }
            });
        }
        let coturn = Coturn { child, log };
        let listening = format!("{TURN_CLIENT_SIDE}:{TURN_PORT}");
        eventually(STARTUP, "coturn listens", || {
            let found = coturn.lines_with(&listening).into_iter().next();
            async move { Ok(found) }
        })
        .await?;
        Ok(coturn)
    }

    /// Every line it printed that contains `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("coturn log")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The TURN URL over UDP.
    pub fn url_udp() -> String {
        format!("turn:{TURN_CLIENT_SIDE}:{TURN_PORT}?transport=udp")
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
