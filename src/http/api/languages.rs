//! `/languages`: what a phone service can offer (English always, the rest with expand_languages).

use axum::Json;

use crate::domain::languages::{self, Language};
use crate::http::auth::Caller;
use crate::http::pagination::ListResponse;

/// Every supported language with its locales.
#[utoipa::path(get, path = "/languages", tag = "languages", responses((status = 200, body = ListResponse<Language>)))]
pub async fn list(_caller: Caller) -> Json<ListResponse<Language>> {
    Json(ListResponse { data: languages::all().to_vec(), next_cursor: None })
}
