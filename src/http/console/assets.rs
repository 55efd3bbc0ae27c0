//! The console's stylesheet and scripts, compiled into the binary and served under a name that
//! carries a hash of their content (`/assets/console.3f2a9c1b.css`), so browsers may cache them
//! for a year and still see a new release at once.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// The name pages link to, with the content hash.
    url: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

static ASSETS: LazyLock<Vec<(&'static str, Asset)>> = LazyLock::new(|| {
    [
        ("console.css", "text/css; charset=utf-8", include_bytes!("../../../static/console.css").as_slice()),
        ("console.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/console.js").as_slice()),
        ("test-call.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/test-call.js").as_slice()),
        ("microphone.js", "text/javascript; charset=utf-8", include_bytes!("../../../static/microphone.js").as_slice()),
    ]
    .into_iter()
    .map(|(name, content_type, bytes)| {
        let hash: String = Sha256::digest(bytes).iter().take(5).map(|b| format!("{b:02x}")).collect();
        let (stem, extension) = name.rsplit_once('.').expect("asset names have an extension");
        (name, Asset { url: format!("/assets/{stem}.{hash}.{extension}"), content_type, bytes })
    })
    .collect()
});

/// The URL of an asset by its plain name (`console.css`).
pub fn url(name: &str) -> &'static str {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| a.url.as_str()).expect("pages link only to assets that exist")
}

/// `GET /assets/{file}`: an asset by its hashed name; old hashes are gone (404).
pub async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    match ASSETS.iter().find(|(_, a)| a.url == path) {
        Some((_, asset)) => {
            ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], asset.bytes)
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
