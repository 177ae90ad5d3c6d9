//! Issue 3: the benchmark harness runs end to end in its short smoke mode (every step, a few
//! seconds each) and prints a table with every measure. Durations are reported, never asserted.
//!
//! The harness is its own workspace crate (bench/); `bash scripts/test.sh` builds its binary
//! first (`cargo test` alone builds only the server's), so it sits next to the server's.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn issue3_the_benchmark_harness_runs_in_smoke_mode() {
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_tessera")).with_file_name("tessera-bench");
    assert!(
        bench.exists(),
        "{} is missing: run the tests with `bash scripts/test.sh` (it builds the binaries \
         first), or `cargo build -p tessera-bench` before `cargo test`",
        bench.display()
    );
    let cache = tempfile::tempdir().expect("a cache dir");
    let mut child = Command::new(&bench)
        .args([
            "--smoke",
            "--server-bin",
            env!("CARGO_BIN_EXE_tessera"),
            "--cache",
        ])
        .arg(cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tessera-bench starts");
    // Every wait has a deadline: a smoke run takes well under a minute. The reader thread ends
    // when the bench closes its stdout (it exits); the deadline covers a hang.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = match rx.recv_timeout(Duration::from_secs(240)) {
        Ok(out) => out,
        Err(_) => {
            let _ = child.kill();
            panic!("tessera-bench --smoke did not finish within 240 s");
        }
    };
    let status = child.wait().expect("tessera-bench exits");
    assert!(status.success(), "tessera-bench failed: {status}\n{out}");
    for row in [
        "Added latency, video",
        "Added latency, video, with a camera off",
        "Added latency, audio",
        "Join time",
        "Capacity, rooms of 2",
        "Memory, server RSS per room",
        "Overhead, tessera CPU / baseline CPU",
        "Audio-only rooms",
    ] {
        let line = out
            .lines()
            .find(|l| l.contains(row))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{out}"));
        assert!(
            !line.contains("NaN"),
            "{row}: no samples were measured: {line}"
        );
    }
}
