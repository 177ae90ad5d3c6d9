//! The GStreamer descriptions of `pipelines/`, as data: embedded in the binary, optionally
//! overridden file by file from a directory (`--pipelines-dir`), filled in with `{name}`
//! placeholders. Changing an encoder setting is an edit to a text file, not a rebuild.

use std::collections::HashMap;
use std::path::Path;

use super::MediaError;

/// The embedded defaults, by file name.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "video-mix.pipeline",
        include_str!("../../pipelines/video-mix.pipeline"),
    ),
    (
        "audio-mix.pipeline",
        include_str!("../../pipelines/audio-mix.pipeline"),
    ),
    (
        "video-input-vp8.pipeline",
        include_str!("../../pipelines/video-input-vp8.pipeline"),
    ),
    (
        "audio-input-opus.pipeline",
        include_str!("../../pipelines/audio-input-opus.pipeline"),
    ),
    (
        "video-output-vp8.pipeline",
        include_str!("../../pipelines/video-output-vp8.pipeline"),
    ),
    (
        "video-output-h264.pipeline",
        include_str!("../../pipelines/video-output-h264.pipeline"),
    ),
    (
        "video-input-h264.pipeline",
        include_str!("../../pipelines/video-input-h264.pipeline"),
    ),
    (
        "recording-webm.pipeline",
        include_str!("../../pipelines/recording-webm.pipeline"),
    ),
    (
        "recording-mp4.pipeline",
        include_str!("../../pipelines/recording-mp4.pipeline"),
    ),
    (
        "video-placeholder.pipeline",
        include_str!("../../pipelines/video-placeholder.pipeline"),
    ),
    (
        "video-background.pipeline",
        include_str!("../../pipelines/video-background.pipeline"),
    ),
];

/// The loaded descriptions.
#[derive(Debug, Clone)]
pub struct Templates {
    by_name: HashMap<String, String>,
}

impl Templates {
    /// The embedded descriptions, each replaced by `dir/<name>` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Templates, MediaError> {
        let mut by_name = HashMap::new();
        for (name, text) in EMBEDDED {
            let text = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => std::fs::read_to_string(&path).map_err(|e| {
                    MediaError::Template(format!("reading {}: {e}", path.display()))
                })?,
                _ => (*text).to_owned(),
            };
            by_name.insert((*name).to_owned(), text);
        }
        Ok(Templates { by_name })
    }

    /// Whether a description with this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The description `name` with comments stripped and `{key}` replaced by its value. An
    /// unknown placeholder left over is an error, so a typo in an override fails loudly.
    pub fn render(&self, name: &str, vars: &[(&str, String)]) -> Result<String, MediaError> {
        let text = self
            .by_name
            .get(name)
            .ok_or_else(|| MediaError::Template(format!("no pipeline description {name}")))?;
        render(text, vars).map_err(|e| MediaError::Template(format!("{name}: {e}")))
    }
}

fn render(text: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push_str(line);
        out.push(' ');
    }
    for (key, value) in vars {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    if let Some(start) = out.find('{')
        && let Some(len) = out[start..].find('}')
    {
        return Err(format!(
            "unknown placeholder {}",
            &out[start..start + len + 1]
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_strips_comments() {
        let t = "# a comment\nfoo a={x}\n  ! bar b={y}\n";
        let out = render(t, &[("x", "1".into()), ("y", "two".into())]).unwrap();
        assert_eq!(out.trim(), "foo a=1 ! bar b=two");
    }

    #[test]
    fn leftover_placeholder_is_an_error() {
        assert!(render("foo a={nope}", &[]).is_err());
    }

    #[test]
    fn embedded_templates_all_load() {
        let t = Templates::load(None).unwrap();
        for (name, _) in EMBEDDED {
            assert!(t.has(name));
        }
    }

    #[test]
    fn a_directory_overrides_one_file() {
        let dir = std::env::temp_dir().join(format!("tessera-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("audio-mix.pipeline"), "fakesrc ! fakesink").unwrap();
        let t = Templates::load(Some(&dir)).unwrap();
        assert_eq!(
            t.render("audio-mix.pipeline", &[]).unwrap().trim(),
            "fakesrc ! fakesink"
        );
        assert!(
            t.render("video-mix.pipeline", &[]).is_err(),
            "embedded one still has placeholders"
        );
    }
}
