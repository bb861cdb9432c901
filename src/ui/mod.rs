//! The web UI: a small static bundle (plain HTML, JavaScript and CSS, no framework, no build
//! step) compiled into the binary, so it works offline and never loads anything from elsewhere.
//! It serves files only: everything it shows comes from the JSON API (`/api/v1/alerts`,
//! `/api/v1/silences`, `/api/v1/rules`, `/api/v1/targets`, `/api/v1/query_range`), read by
//! `ui/app.js` in the browser. It holds no state and touches nothing but its own constants.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every UI response: scripts, styles and API calls from this
/// origin only, no inline script or style, no plugins, no framing, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The bundle: (path, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("index.html")),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("app.js"),
    ),
    (
        "/ui/style.css",
        "text/css; charset=utf-8",
        include_str!("style.css"),
    ),
];

/// README.md, compiled in: the UI links to its sections, which then work offline and match the
/// binary's version.
const README: &str = include_str!("../../README.md");

/// The README sections the UI links to: (path, the section's `## ` heading).
pub const DOCS: &[(&str, &str)] = &[("/ui/docs/rules", "## Rules and alerts")];

/// The section of `markdown` that opens with the line `heading`, up to the next heading of the
/// same or a higher level (outside code fences); None when no line is `heading`.
pub fn section<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = markdown.match_indices(heading).map(|(i, _)| i).find(|&i| {
        (i == 0 || markdown[..i].ends_with('\n'))
            && markdown[i + heading.len()..].starts_with(['\n', '\r'])
    })?;
    let mut fenced = false;
    // where the line being looked at starts
    let mut at = start;
    for (i, line) in markdown[start..].split_inclusive('\n').enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if i > 0 && !fenced && (1..=level).contains(&hashes) && line[hashes..].starts_with(' ') {
            return Some(&markdown[start..at]);
        }
        at += line.len();
    }
    Some(&markdown[start..])
}

/// The UI's routes: `/` (the page), its `/ui/*` files, and the README sections of [`DOCS`] as
/// plain text, each with its content type, the [`CONTENT_SECURITY_POLICY`], `nosniff`, and
/// `no-cache` (a new binary serves new files at the same paths). Merged into the server's
/// router; generic over the router's state, which it does not use.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let router = ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        });
    DOCS.iter().fold(router, |router, &(path, heading)| {
        let body = section(README, heading).unwrap_or("this section is missing from README.md\n");
        router.route(
            path,
            get(move || async move { asset("text/plain; charset=utf-8", body) }),
        )
    })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_runs_to_the_next_heading_of_its_level_outside_code_fences() {
        let md = "# t\n## A\na\n```\n## not a heading\n```\n### A.1\nx\n## B\nb\n";
        assert_eq!(
            section(md, "## A"),
            Some("## A\na\n```\n## not a heading\n```\n### A.1\nx\n")
        );
        assert_eq!(section(md, "## B"), Some("## B\nb\n"));
        // a heading is a whole line
        assert_eq!(section(md, "## "), None);
        assert_eq!(section(md, "## C"), None);
    }

    #[test]
    fn every_linked_readme_section_exists() {
        for (path, heading) in DOCS {
            let text = section(README, heading).unwrap_or_else(|| panic!("{path}: {heading}"));
            assert!(text.len() > heading.len() + 100, "{path}: {text}");
        }
    }
}
