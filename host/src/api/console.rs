//! `/console`: the web console, a single-page app whose files are built into the binary
//! (host/build.rs embeds `host/console/dist`). It talks to the same `/v1` API with the key
//! a person signs in with, so it needs no key to load and can do nothing the key cannot.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// The page only loads its own scripts and styles, talks only to this server, and is never
/// framed: a key typed into it cannot be sent elsewhere by an injected script or a clickjacking
/// page. Styles may be inline because the chart library positions its elements that way.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /console`: the console lives under `/console/`.
#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 308, description = "To `/console/`.", headers(("location" = String)))))]
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/`: the web console's page (no key needed to load it; it asks for one).
#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "The console's HTML page.", content_type = "text/html", body = String),
        (status = 404, description = "This binary was built without the console.", body = super::error::ErrorResponse)))]
pub async fn index() -> Result<Response, ApiError> {
    serve("index.html")
}

/// `GET /console/{path}`: one of the console's files (scripts, styles, images).
#[utoipa::path(get, path = "/console/{path}", tag = "console",
    params(("path" = String, Path, description = "A file of the console, such as `assets/index-1a2b3c.js`.")),
    responses((status = 200, description = "The file.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file.", body = super::error::ErrorResponse)))]
pub async fn asset(Path(path): Path<String>) -> Result<Response, ApiError> {
    serve(&path)
}

fn serve(name: &str) -> Result<Response, ApiError> {
    let Some((_, bytes)) = ASSETS.iter().find(|(n, _)| *n == name) else {
        return Err(if ASSETS.is_empty() {
            ApiError::not_found(
                "This binary was built without the web console: run `make setup` (it builds host/console with npm) \
                 and rebuild.",
            )
            .code("console_not_built")
        } else {
            ApiError::not_found(format!("The console has no file '{name}'.")).code("unknown_url")
        });
    };
    // Vite names built assets by content hash, so they never change under one name; the
    // page itself must be revalidated to pick up a new build.
    let cache = if name.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let mut resp = (*bytes).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(resp)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "webmanifest") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_known_type() {
        for (name, _) in ASSETS {
            assert_ne!(content_type(name), "application/octet-stream", "{name}");
        }
    }

    #[test]
    fn the_page_is_served_with_its_policy_or_a_clear_404() {
        match serve("index.html") {
            Ok(resp) => {
                assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
                assert!(resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("connect-src 'self'"));
            }
            Err(e) => assert_eq!(e.into_response().status(), axum::http::StatusCode::NOT_FOUND),
        }
        assert!(serve("../Cargo.toml").is_err());
    }
}
