//! The browser client (`web/`), embedded in the binary so the server is one file to deploy.
//! Plain HTML, CSS and ES modules: no build step, served as they are in the repository.

use warp::http::{Response, StatusCode, header};

use super::Reply;

/// Every file of `web/`, by URL path.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "view.html",
        "text/html; charset=utf-8",
        include_str!("../../web/view.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
    (
        "js/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/app.js"),
    ),
    (
        "js/view.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/view.js"),
    ),
    (
        "js/whip.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/whip.js"),
    ),
    (
        "js/events.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/js/events.js"),
    ),
];

/// The file at `path` (`""` is the join page), if there is one.
pub fn file(path: &str) -> Option<Reply> {
    let path = if path.is_empty() { "index.html" } else { path };
    let (_, content_type, body) = FILES.iter().find(|(p, _, _)| *p == path)?;
    Some(
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, *content_type)
            // Small files, and a new server version must not run with an old page.
            .header(header::CACHE_CONTROL, "no-cache")
            .body((*body).into())
            .expect("static response parts are valid"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_pages_import_is_served() {
        for (path, _, body) in FILES {
            for line in body.lines() {
                let line = line.trim();
                let target = line
                    .split_once("from '")
                    .or_else(|| line.split_once("src=\""))
                    .or_else(|| line.split_once("href=\"/"))
                    .map(|(_, rest)| rest.split(['\'', '"']).next().unwrap_or(""));
                let Some(target) = target else { continue };
                if target.starts_with("http") || target.is_empty() || target.contains('?') {
                    continue;
                }
                let resolved = match target.strip_prefix("./") {
                    Some(rest) => format!("js/{rest}"),
                    None => target.trim_start_matches('/').to_owned(),
                };
                assert!(
                    file(&resolved).is_some(),
                    "{path} refers to {target}, which is not served"
                );
            }
        }
    }
}
