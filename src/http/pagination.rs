//! Keyset pagination shared by every list route: `limit` (1–100, default 20) and an opaque
//! `cursor` (the last id of the previous page; ids are uuid v7, so id order is creation order).

use crate::http::error_codes::ErrorCode;
use uuid::Uuid;

use super::error::ApiError;

/// The query of a list that pages by id and filters nothing: `limit` and `cursor`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "UUID_CURSOR_PATTERN")]
    pub cursor: Option<String>,
}

/// A parsed page request: fetch `fetch_limit()` rows with `id > after`, ordered by id.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    pub limit: u32,
    pub after: Option<Uuid>,
}

impl Keyset {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Keyset, ApiError> {
        let limit = limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request(ErrorCode::InvalidQuery, "limit must be between 1 and 100"));
        }
        let after = cursor.map(uuid_cursor).transpose()?;
        Ok(Keyset { limit, after })
    }

    /// One row more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Trim the extra row; the cursor of the next page, if there is one.
    pub fn finish<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> Uuid) -> Option<String> {
        if items.len() > self.limit as usize {
            items.truncate(self.limit as usize);
            items.last().map(|item| id(item).to_string())
        } else {
            None
        }
    }
}

/// `uuid_cursor`'s rule as a regular expression, for the OpenAPI document (parameters name it:
/// `pattern = "UUID_CURSOR_PATTERN"`, see `openapi::resolve_patterns`).
pub const UUID_CURSOR_PATTERN: &str = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

/// A uuid cursor as this API gives them out: the hyphenated form only (what the documented
/// pattern allows; `Uuid::parse_str` would also take braces, a urn or bare hex).
pub fn uuid_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    Some(cursor)
        .filter(|c| c.len() == 36)
        .and_then(|c| Uuid::parse_str(c).ok())
        .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidCursor, "cursor is not one this API gave out"))
}
