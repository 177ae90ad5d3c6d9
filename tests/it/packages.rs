//! Issue 9: a fresh Debian 12 machine has every GStreamer element tessera and its tests name.
//!
//! The camera-off tile once needed `textoverlay` (Debian's `gstreamer1.0-x`), which neither
//! scripts/setup.sh nor the Dockerfile installed: the suite failed on a fresh machine while CI,
//! on a machine that happened to have the package, passed. This test makes that class of fault
//! impossible to miss: it reads every element named in pipelines/, src/ and tests/, asks
//! GStreamer which plugin file provides it and dpkg which package ships that file, and fails
//! naming each package the set-up script (and, for the product's elements, the Dockerfile's
//! runtime image) does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use gst::prelude::*;

use crate::support::media::init_gst;

/// Where an element is named: a product file (pipelines/, src/) or a test file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Needed {
    /// By the server: setup.sh's build/run list and the Dockerfile's runtime image.
    Product,
    /// By the tests only: setup.sh (either list).
    Tests,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, ext, out)?;
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

/// Words of a gst-launch description: whitespace-separated outside double quotes.
fn description_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The element factory names a description uses: bare lower-case words (not properties,
/// caps, `name.` references, `!` or `{placeholders}`).
fn elements_of_description(text: &str) -> Vec<String> {
    description_words(text)
        .into_iter()
        .filter(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

/// The string literals of a Rust source (close enough: escapes kept, `\` line continuations
/// joined), with the text just before each (to see `ElementFactory::make(`).
fn string_literals(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Skip comments, which name elements in prose.
        if source[i..].starts_with("//") {
            i += source[i..].find('\n').unwrap_or(source.len() - i);
            continue;
        }
        if bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\'') {
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                if bytes[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let literal = source[start..j.min(source.len())].replace("\\\n", " ");
            let before = source[i.saturating_sub(40)..i].to_owned();
            out.push((literal, before));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Every element named in pipelines/, src/ and tests/, with the file it appears in first and
/// whether the product needs it.
fn named_elements() -> Result<BTreeMap<String, (Needed, String)>> {
    let mut found: BTreeMap<String, (Needed, String)> = BTreeMap::new();
    let mut add = |name: String, needed: Needed, file: &Path| {
        let file = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        let entry = found.entry(name).or_insert((needed, file.clone()));
        if needed < entry.0 {
            *entry = (needed, file);
        }
    };
    let mut pipelines = Vec::new();
    files(&root().join("pipelines"), "pipeline", &mut pipelines)?;
    for path in &pipelines {
        let text = std::fs::read_to_string(path)?;
        let description: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for name in elements_of_description(&description) {
            add(name, Needed::Product, path);
        }
    }
    for (dir, needed) in [("src", Needed::Product), ("tests", Needed::Tests)] {
        let mut sources = Vec::new();
        files(&root().join(dir), "rs", &mut sources)?;
        for path in &sources {
            let text = std::fs::read_to_string(path)?;
            for (literal, before) in string_literals(&text) {
                let made = before.trim_end().ends_with("ElementFactory::make(");
                let description = literal.contains(" ! ") || literal.contains(" name=");
                if !(made || description) {
                    continue;
                }
                for name in elements_of_description(&literal) {
                    if gst::ElementFactory::find(&name).is_some() || made {
                        add(name, needed, path);
                    }
                }
            }
        }
    }
    Ok(found)
}

/// The Debian package that ships `file`. Debian 12 merged /lib into /usr/lib, and dpkg knows
/// the /usr path while GStreamer's registry may hold the /lib one: the canonical path is asked.
fn package_of(file: &Path) -> Result<String> {
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    let file = canonical.display().to_string();
    let out = Command::new("dpkg")
        .args(["-S", &file])
        .output()
        .context("running dpkg -S")?;
    if !out.status.success() {
        bail!("no package ships {file}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let package = text
        .lines()
        .next()
        .and_then(|l| l.split(':').next())
        .context("dpkg -S printed nothing")?;
    Ok(package.trim().to_owned())
}

/// The words of bash array `name=( ... )` in setup.sh.
fn bash_array(script: &str, name: &str) -> Result<BTreeSet<String>> {
    let start = script
        .find(&format!("{name}=("))
        .with_context(|| format!("setup.sh has no {name}=("))?;
    let body = &script[start + name.len() + 2..];
    let end = body.find(')').context("unterminated array")?;
    Ok(body[..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect())
}

/// The packages the Dockerfile's runtime stage installs.
fn dockerfile_runtime(dockerfile: &str) -> Result<BTreeSet<String>> {
    let stage = dockerfile
        .split("\nFROM ")
        .find(|s| s.contains(" AS runtime"))
        .context("the Dockerfile has no runtime stage")?;
    let install = stage
        .split("--no-install-recommends")
        .nth(1)
        .context("the runtime stage installs nothing")?;
    let list = install.split("&&").next().unwrap_or("");
    Ok(list
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_owned)
        .collect())
}

#[test]
fn issue9_every_gstreamer_element_comes_from_a_listed_package() {
    init_gst();
    let elements = named_elements().expect("reading the sources");
    for expected in [
        "textoverlay",
        "x264enc",
        "compositor",
        "webrtcbin",
        "audiomixer",
    ] {
        assert!(
            elements.contains_key(expected),
            "the scan must find {expected}: {:?}",
            elements.keys()
        );
    }
    let setup = std::fs::read_to_string(root().join("scripts/setup.sh")).expect("setup.sh");
    let build = bash_array(&setup, "BUILD_PACKAGES").expect("BUILD_PACKAGES");
    let test = bash_array(&setup, "TEST_PACKAGES").expect("TEST_PACKAGES");
    let docker = dockerfile_runtime(
        &std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile"),
    )
    .expect("the runtime stage");

    let mut faults = Vec::new();
    let mut seen = BTreeMap::new();
    for (element, (needed, file)) in &elements {
        let Some(factory) = gst::ElementFactory::find(element) else {
            faults.push(format!(
                "{element} (named in {file}) is not installed at all: find its package \
                 (apt-file search, packages.debian.org), add it to scripts/setup.sh"
            ));
            continue;
        };
        // The registry knows each feature's plugin file without loading it.
        let plugin_file = factory
            .plugin_name()
            .and_then(|name| gst::Registry::get().find_plugin(&name))
            .and_then(|plugin| plugin.filename());
        let Some(plugin_file) = plugin_file else {
            faults.push(format!("{element} (named in {file}): no plugin file"));
            continue;
        };
        let package = match package_of(&plugin_file) {
            Ok(p) => p,
            Err(e) => {
                faults.push(format!("{element} (named in {file}): {e}"));
                continue;
            }
        };
        seen.insert(element.clone(), package.clone());
        let in_setup =
            build.contains(&package) || (*needed == Needed::Tests && test.contains(&package));
        if !in_setup {
            faults.push(format!(
                "{element} (named in {file}) comes from {package}, which scripts/setup.sh does \
                 not install"
            ));
        } else if *needed == Needed::Product && !build.contains(&package) {
            faults.push(format!(
                "{element} (named in {file}, the server's) comes from {package}: it belongs in \
                 setup.sh's BUILD_PACKAGES, not only the test list"
            ));
        }
        if *needed == Needed::Product && !docker.contains(&package) {
            faults.push(format!(
                "{element} (named in {file}) comes from {package}, which the Dockerfile's \
                 runtime image does not install"
            ));
        }
    }
    eprintln!("elements and their packages: {seen:?}");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn issue9_the_scan_reads_descriptions_as_gstreamer_does() {
    let words = elements_of_description(
        "appsrc name=src caps=\"a/b, c=(string)\\\"x y\\\"\" ! rtpjitterbuffer latency={jitter_ms} \
         ! mux. videotestsrc ! video/x-raw,width=16 ! mix.sink_0 {webrtc}",
    );
    assert_eq!(words, ["appsrc", "rtpjitterbuffer", "videotestsrc"]);
    let literals = string_literals(
        "// \"textoverlay\" in a comment\nlet e = gst::ElementFactory::make(\"tee\");\nlet d = \"a ! b\";",
    );
    let texts: Vec<&str> = literals.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(texts, ["tee", "a ! b"]);
    assert!(literals[0].1.ends_with("ElementFactory::make("));
}
