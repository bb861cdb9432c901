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

/// The UI's routes: `/` (the page) and its `/ui/*` files, each with its content type, the
/// [`CONTENT_SECURITY_POLICY`], `nosniff`, and `no-cache` (a new binary serves new files at the
/// same paths). Merged into the server's router; generic over the router's state, which it
/// does not use.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
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
