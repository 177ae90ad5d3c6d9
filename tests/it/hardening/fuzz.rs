//! Every fuzz target runs for a few seconds from its committed seeds through
//! `scripts/fuzz.sh` (AFL++ through cargo-afl): none crashes or hangs, each really executes.

use std::process::Command;

/// Seconds each target runs here; `scripts/fuzz.sh 600` is a real campaign.
const SECONDS: &str = "8";

#[test]
fn issue16_every_fuzz_target_runs_without_a_crash_or_hang() {
    let out = tempfile::tempdir().expect("a folder for AFL's output");
    let root = env!("CARGO_MANIFEST_DIR");
    let run = Command::new("bash")
        .arg(format!("{root}/scripts/fuzz.sh"))
        .arg(SECONDS)
        .env("FUZZ_OUT", out.path())
        .output()
        .expect("scripts/fuzz.sh runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "scripts/fuzz.sh failed ({}):\n{stdout}\n{}",
        run.status,
        stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    for (target, _) in tessera::fuzzing::TARGETS {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("fuzz: {target} ")))
            .unwrap_or_else(|| panic!("no report for {target}:\n{stdout}"));
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{target}: no {name} in {line:?}"))
        };
        assert_eq!(field("crashes"), 0, "{line}");
        assert_eq!(field("hangs"), 0, "{line}");
        // It ran its inputs, not just started: even the GStreamer target runs dozens of
        // inputs in a few seconds, the parsers hundreds of thousands.
        assert!(field("execs") >= 20, "{target} barely ran: {line}");
        assert!(field("corpus") >= 1, "{line}");
    }
}

#[test]
fn issue16_every_seed_and_every_past_crash_replays_cleanly() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut replayed = 0;
    for (target, run) in tessera::fuzzing::TARGETS {
        for dir in ["seeds", "regressions"] {
            let Ok(entries) = std::fs::read_dir(format!("{root}/fuzz/{dir}/{target}")) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = std::fs::read(&path).expect("a seed");
                run(&data);
                replayed += 1;
            }
        }
    }
    // 48 seeds and the regressions at least.
    assert!(replayed > 48, "only {replayed} inputs replayed");
}
