//! Cursor pagination for list endpoints: `?limit=` (1–200, default 50) and `?cursor=` (opaque,
//! from the previous page's `next_cursor`). The cursor is the last item's id, base64url-encoded;
//! ids are UUIDv7, so "older than the cursor" is a stable position even while rows are added.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::ApiError;
use crate::storage::{Page, PageRequest};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items to return, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, got {limit}")));
        }
        let before = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(PageRequest { before, limit })
    }
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::BadRequest("cursor is not one this API issued; pass next_cursor back unchanged".into()))
}

/// One page of a list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> From<Page<T>> for ListResponse<T> {
    fn from(page: Page<T>) -> Self {
        Self { data: page.items, next_cursor: page.next_cursor.map(|id| URL_SAFE_NO_PAD.encode(id.as_bytes())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let id = Uuid::now_v7();
        let page: ListResponse<()> = Page { items: vec![], next_cursor: Some(id) }.into();
        let params = PageParams { limit: Some(10), cursor: page.next_cursor };
        assert_eq!(params.to_request().unwrap().before, Some(id));
        assert!(PageParams { limit: None, cursor: Some("nope".into()) }.to_request().is_err());
        assert!(PageParams { limit: Some(0), cursor: None }.to_request().is_err());
        assert!(PageParams { limit: Some(201), cursor: None }.to_request().is_err());
    }
}
