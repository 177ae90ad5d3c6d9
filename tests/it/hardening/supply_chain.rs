//! Every dependency's licence, duplicates and source, by cargo-deny (deny.toml says what is
//! allowed and why): for the server's workspace and the fuzz targets' own.

use std::process::Command;

#[test]
fn issue16_dependencies_pass_cargo_deny() {
    let root = env!("CARGO_MANIFEST_DIR");
    for manifest in ["Cargo.toml", "fuzz/Cargo.toml"] {
        let run = Command::new("cargo")
            .arg("deny")
            .arg("--manifest-path")
            .arg(format!("{root}/{manifest}"))
            .arg("--config")
            .arg(format!("{root}/deny.toml"))
            .args([
                "--workspace",
                "--locked",
                "check",
                "--show-stats",
                "licenses",
                "bans",
                "sources",
            ])
            .output()
            .expect("cargo deny runs (scripts/setup.sh --test installs it)");
        let stderr = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            run.status.success(),
            "cargo deny check failed for {manifest}:\n{stderr}"
        );
        for check in ["licenses ok", "bans ok", "sources ok"] {
            assert!(
                stderr.contains(check),
                "{manifest}: no {check:?} in\n{stderr}"
            );
        }
        eprintln!("{manifest}:\n{stderr}");
    }
}
