//! Which resources exist and which methods each takes (pure): what tells a wrong method on a
//! real resource (`405` with `Allow`) from a path that does not exist (`404`), whatever the
//! method. Kept beside the routes in `mod.rs`; a test checks they agree.

use warp::http::Method;

/// The methods the resource at `path` takes, or `None` if there is no such resource. `OPTIONS`
/// (CORS preflight, RFC 9725) is answered on every resource and is not listed.
pub fn allowed_methods(path: &str, is_page: impl Fn(&str) -> bool) -> Option<&'static [Method]> {
    const GET: &[Method] = &[Method::GET];
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let allowed: &'static [Method] = match segments.as_slice() {
        ["healthz"]
        | ["readyz"]
        | ["metrics"]
        | ["rooms"]
        | ["debug", "counts"]
        | ["ice-servers"] => GET,
        ["rooms", _room] => &[Method::GET, Method::DELETE],
        ["rooms", _room, "whip" | "whep"] => &[Method::POST],
        ["rooms", _room, "sessions", _id] => &[Method::PATCH, Method::DELETE],
        ["rooms", _room, "sessions", _id, "mute" | "pin"] => &[Method::PUT],
        ["rooms", _room, "layout"] => &[Method::GET, Method::PUT, Method::POST],
        ["rooms", _room, "events"] => GET,
        ["rooms", _room, "recordings"] => &[Method::GET, Method::POST],
        ["rooms", _room, "recordings", _id] => &[Method::DELETE],
        ["rooms", _room, "recordings", _id, "file"] => GET,
        _ if is_page(path.trim_start_matches('/')) => GET,
        _ => return None,
    };
    Some(allowed)
}

/// The value of an `Allow` header for `methods` (OPTIONS always included).
pub fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .chain(["OPTIONS"])
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(path: &str) -> Option<Vec<&'static str>> {
        allowed_methods(path, |p| p == "index.html" || p.is_empty())
            .map(|m| m.iter().map(Method::as_str).collect())
    }

    #[test]
    fn issue10_unknown_paths_have_no_methods_and_known_ones_theirs() {
        assert_eq!(
            allowed("/sessions/x"),
            None,
            "not a resource: 404 whatever the method"
        );
        assert_eq!(allowed("/rooms/a/b/c/d/e/f"), None);
        assert_eq!(
            allowed("/rooms/a/sessions/1f"),
            Some(vec!["PATCH", "DELETE"])
        );
        assert_eq!(allowed("/rooms/a/whip"), Some(vec!["POST"]));
        assert_eq!(allowed("/rooms/a/recordings"), Some(vec!["GET", "POST"]));
        assert_eq!(allowed("/"), Some(vec!["GET"]));
        assert_eq!(allowed("/index.html"), Some(vec!["GET"]));
        assert_eq!(allowed("/nope.html"), None);
        assert_eq!(
            allow_header(&[Method::PATCH, Method::DELETE]),
            "PATCH, DELETE, OPTIONS"
        );
    }
}
