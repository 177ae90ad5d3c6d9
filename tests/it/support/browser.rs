//! A real browser for the browser tests: Debian's chromium, driven through its chromedriver over
//! WebDriver (fantoccini), with fake camera and microphone.
//!
//! Network rule: a browser test runs in a network namespace that has nothing but `lo`
//! ([`super::netns::isolated`]: the server, chromedriver and chromium all start inside it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// How often a condition in the page is polled.
const POLL: Duration = Duration::from_millis(100);

/// The flags of the issue: headless, no sandbox (root in CI), fake devices granted without a
/// prompt, loopback ICE candidates allowed, and nothing that phones home.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
    "--window-size=1280,720",
    // Sound may start without a click, as on a kiosk configured for it.
    "--autoplay-policy=no-user-gesture-required",
];

/// Where screenshots go: `target/test-artifacts/`.
pub fn artifacts_dir() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A chromedriver on a loopback port of its own choosing; it and every chromium it started are
/// killed on drop (they share its process group).
pub struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    pub fn start() -> Result<Chromedriver> {
        Self::spawn(Command::new("chromedriver"))
    }

    /// One inside the network namespace of process `netns_pid` (a test network's client side):
    /// its browsers are there too, and it listens on that namespace's loopback, so only a
    /// thread in the namespace can talk to it (`turn_net::NsRuntime`).
    pub fn start_in(netns_pid: u32) -> Result<Chromedriver> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{netns_pid}/ns/net"))
            .args(["--", "chromedriver"]);
        Self::spawn(command)
    }

    /// Where it answers.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `command` is chromedriver, or a wrapper that `exec`s it (same pid, same group).
    fn spawn(mut command: Command) -> Result<Chromedriver> {
        use std::os::unix::process::CommandExt;
        let mut child = command
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .context("starting chromedriver (Debian package chromium-driver)")?;
        let stdout = child.stdout.take().expect("stdout was piped above");
        let (tx, rx) = mpsc::sync_channel::<u16>(1);
        // Reads the port line, then drains the rest so chromedriver never blocks on its stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse().ok())
                {
                    let _ = tx.try_send(port);
                }
            }
        });
        let mut driver = Chromedriver {
            child,
            url: String::new(),
        };
        let port = rx
            .recv_timeout(DRIVER_STARTUP)
            .context("chromedriver did not say which port it listens on")?;
        driver.url = format!("http://127.0.0.1:{port}");
        Ok(driver)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The negative pid is the process group: chromedriver and its browsers ("--" so kill(1)
        // does not read it as an option).
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One chromium window (its own profile) in a WebDriver session.
pub struct Browser {
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn open(driver: &Chromedriver) -> Result<Browser> {
        Self::open_with(driver, &[], &[]).await
    }

    /// A browser with `extra` flags and without the default flags in `without` (e.g. a person
    /// who refuses the camera: no fake-UI grant, prompts denied).
    pub async fn open_with(
        driver: &Chromedriver,
        extra: &[&str],
        without: &[&str],
    ) -> Result<Browser> {
        Self::open_at(driver.url().to_owned(), extra, without).await
    }

    /// [`open_with`](Self::open_with) through the chromedriver at `driver_url`. The session's
    /// connection to it is made on the caller's runtime (a namespace's, for a driver there).
    pub async fn open_at(driver_url: String, extra: &[&str], without: &[&str]) -> Result<Browser> {
        let profile = tempfile::tempdir().context("a fresh profile directory")?;
        let mut args: Vec<String> = CHROMIUM_FLAGS
            .iter()
            .chain(extra)
            .filter(|f| !without.contains(f))
            .map(|s| s.to_string())
            .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let caps = match caps {
            Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .context("opening a chromium session through chromedriver")?;
        Ok(Browser {
            client,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Runs `body` (a function body: `return ...;`) in the page and returns its value.
    pub async fn eval<T: DeserializeOwned>(&self, body: &str) -> Result<T> {
        let value = self
            .client
            .execute(body, vec![])
            .await
            .with_context(|| format!("running in the page: {body}"))?;
        serde_json::from_value(value.clone())
            .with_context(|| format!("reading {value} from the page ({body})"))
    }

    /// Runs an async function body (it may `await`) and returns its value.
    pub async fn eval_async<T: DeserializeOwned>(&self, body: &str) -> Result<T> {
        let script = format!(
            "const done = arguments[arguments.length - 1];\
             (async () => {{ {body} }})().then(done, (e) => done({{ error: String(e) }}));"
        );
        let value = self
            .client
            .execute_async(&script, vec![])
            .await
            .with_context(|| format!("running in the page: {body}"))?;
        if let Some(e) = value.get("error").and_then(Value::as_str) {
            bail!("the page threw: {e} ({body})");
        }
        serde_json::from_value(value.clone())
            .with_context(|| format!("reading {value} from the page ({body})"))
    }

    /// Polls `body` (returning a value; `null`/`false` mean "not yet") until it is truthy.
    pub async fn wait_for(&self, what: &str, body: &str, deadline: Duration) -> Result<Value> {
        let end = Instant::now() + deadline;
        loop {
            let last = match self.eval_async::<Value>(body).await {
                Ok(v) if !matches!(v, Value::Null | Value::Bool(false)) => return Ok(v),
                Ok(v) => v,
                Err(e) => json!(e.to_string()),
            };
            if Instant::now() >= end {
                bail!("{what}: not within {deadline:?} (last: {last})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.client
            .find(Locator::Css(css))
            .await
            .with_context(|| format!("finding {css}"))?
            .click()
            .await
            .with_context(|| format!("clicking {css}"))
    }

    /// Saves a PNG of the window to `target/test-artifacts/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        let path = artifacts_dir()?.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    pub async fn close(self) -> Result<()> {
        self.client.close().await.context("closing the browser")
    }
}
