//! The web console: static files embedded in the binary (no CDN, no build
//! step), served under `/console`: the page, its stylesheet and its
//! JavaScript modules. The page signs in with the same
//! bearer tokens as the API and calls only the public REST API; the
//! server's rules (tenants, roles) are the API's. A strict Content Security
//! Policy allows only this origin's scripts, styles and API.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../console/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file under `/console/`, by name: (content type, body).
const FILES: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../../console/app.css")),
    ("views.css", CSS, include_str!("../../console/views.css")),
    ("app.js", JS, include_str!("../../console/app.js")),
    ("dom.js", JS, include_str!("../../console/dom.js")),
    ("session.js", JS, include_str!("../../console/session.js")),
    ("licenses.js", JS, include_str!("../../console/licenses.js")),
    ("license.js", JS, include_str!("../../console/license.js")),
    ("report.js", JS, include_str!("../../console/report.js")),
    ("audit.js", JS, include_str!("../../console/audit.js")),
];

/// The Content-Security-Policy of every console file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => crate::problem::Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "not-found",
            "no such console file",
        )
        .into_response(),
    }
}

/// `/console` (the page) and `/console/<file>` (its stylesheet and modules).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let index = || async { asset("text/html; charset=utf-8", INDEX) };
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{file}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for (name, _, body) in FILES {
            for line in body
                .lines()
                .filter(|l| l.trim_start().starts_with("import "))
            {
                let Some(target) = line.split('\'').nth(1) else {
                    continue;
                };
                let target = target.trim_start_matches("./");
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not served"
                );
            }
        }
        for (name, _, _) in FILES.iter().filter(|(n, _, _)| n.ends_with(".css")) {
            assert!(
                INDEX.contains(&format!("/console/{name}")),
                "{name} is not linked"
            );
        }
        assert!(INDEX.contains("/console/app.js"));
    }
}
