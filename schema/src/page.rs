//! List pagination. Lists are newest first, ordered by `(tm_create, id)` descending so
//! that rows sharing a creation time are neither skipped nor repeated: the page token
//! is the key of the last row returned. `limit`/`offset` are accepted as well.

use chrono::NaiveDateTime;

pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 100;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    First,
    /// After the row with this key (from `page_token`).
    After(Cursor),
    /// After skipping this many rows (from `offset`).
    Offset(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub start: Start,
}

impl PageRequest {
    pub fn first(size: i64) -> Self {
        PageRequest { size, start: Start::First }
    }

    /// The cursor to filter after, if any.
    pub fn cursor(&self) -> Option<&Cursor> {
        match &self.start {
            Start::After(c) => Some(c),
            _ => None,
        }
    }

    pub fn offset(&self) -> i64 {
        match self.start {
            Start::Offset(n) => n,
            _ => 0,
        }
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.size + 1
    }
}

/// The key of a row in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub tm_create: NaiveDateTime,
    pub id: String,
}

impl Cursor {
    /// `<microseconds since the epoch, hex>-<uuid>`: URL-safe, and opaque by contract.
    pub fn encode(&self) -> String {
        format!("{:x}-{}", self.tm_create.and_utc().timestamp_micros(), self.id)
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (micros, id) = token.split_once('-')?;
        let micros = i64::from_str_radix(micros, 16).ok()?;
        let id = uuid::Uuid::parse_str(id).ok()?.to_string();
        Some(Cursor { tm_create: crate::time::from_unix_micros(micros)?, id })
    }
}

/// One page of a list, as the API returns it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub result: Vec<T>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Cuts the extra row fetched by [`PageRequest::fetch`] and derives the token.
    pub fn from_rows(mut rows: Vec<T>, request: &PageRequest, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let more = rows.len() as i64 > request.size;
        rows.truncate(request.size.max(0) as usize);
        let next_page_token = if more { rows.last().map(|r| key(r).encode()) } else { None };
        Page { result: rows, next_page_token }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { result: self.result.into_iter().map(f).collect(), next_page_token: self.next_page_token }
    }
}

/// Applies a [`PageRequest`] to a boxed query over a table with `tm_create` and `id`.
#[macro_export]
macro_rules! paginate {
    ($query:expr, $table:ident, $page:expr) => {{
        use diesel::prelude::*;
        let page: &$crate::page::PageRequest = $page;
        let mut query = $query;
        if let Some(cursor) = page.cursor() {
            query = query.filter(
                $table::tm_create
                    .lt(cursor.tm_create)
                    .or($table::tm_create.eq(cursor.tm_create).and($table::id.lt(cursor.id.clone()))),
            );
        }
        query.order(($table::tm_create.desc(), $table::id.desc())).limit(page.fetch()).offset(page.offset())
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips() {
        let c = Cursor {
            tm_create: crate::time::from_unix_micros(1_768_910_405_123_456).expect("time"),
            id: uuid::Uuid::now_v7().to_string(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("garbage"), None);
    }
}
