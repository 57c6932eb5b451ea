//! The web UI's files (built from `ui/` by `build.rs` and embedded in the binary), served at
//! `/`: `index.html` for `/`, hashed files under `/assets/` cached for good, gzip when the
//! client takes it, ETags, and headers that keep the page from being framed or from loading
//! anything but its own scripts and styles. The files need no sign-in (the page then asks for
//! one); everything they show comes from `/v1`, which does.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// One embedded file.
#[derive(Debug)]
pub(crate) struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// What the UI's pages may load and do.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

/// Whether an `Accept-Encoding` header takes gzip.
fn takes_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Serves an embedded file for GET and HEAD; anything else is the API's "no such path".
pub(crate) async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let asset = match find(uri.path()) {
        Some(asset) if method == Method::GET || method == Method::HEAD => asset,
        _ => {
            return ApiError::not_found(
                "no such path; the web UI is at /, the API is described at /v1/openapi.json",
            )
            .into_response()
        }
    };
    let cache = if asset.path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == asset.etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match asset.gzip {
            Some(gzip) if takes_gzip(&headers) => {
                ([(header::CONTENT_ENCODING, "gzip")], gzip).into_response()
            }
            _ => asset.body.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        assert!(takes_gzip(&accept("gzip, deflate, br")));
        assert!(takes_gzip(&accept("br;q=1.0, gzip;q=0.8")));
        assert!(takes_gzip(&accept("*")));
        assert!(!takes_gzip(&accept("gzip;q=0")));
        assert!(!takes_gzip(&accept("br, deflate")));
        assert!(!takes_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_index_is_served_at_the_root() {
        let index = find("/").expect("every build embeds an index.html");
        assert_eq!(index.path, "/index.html");
        assert!(index.content_type.starts_with("text/html"));
        assert!(find("/v1/volumes").is_none());
    }

    /// The issue's budget: what a browser downloads, compressed, stays under 300 KiB.
    #[test]
    fn the_scripts_and_styles_stay_under_300_kib_compressed() {
        let total: usize = ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") || a.path.ends_with(".css"))
            .map(|a| a.gzip.unwrap_or(a.body).len())
            .sum();
        assert!(total < 300 * 1024, "{total} bytes");
    }

    #[tokio::test]
    async fn the_page_is_kept_from_frames_and_foreign_scripts() {
        let response = serve(Method::GET, Uri::from_static("/"), accept("gzip")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let h = response.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        let etag = h[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        let cached = serve(Method::GET, Uri::from_static("/"), again).await;
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        let posted = serve(Method::POST, Uri::from_static("/"), HeaderMap::new()).await;
        assert_eq!(posted.status(), StatusCode::NOT_FOUND);
    }
}
