//! Access keys: long-lived credentials of a customer, acting as its admin. Only the
//! SHA-256 of a key is stored; the key itself is shown once, at creation.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{AccessKeyId, CustomerId};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::accesskeys;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = accesskeys)]
pub struct AccessKey {
    pub id: AccessKeyId,
    pub customer_id: CustomerId,
    pub name: String,
    pub detail: String,
    #[serde(skip)]
    pub token_hash: String,
    /// The first characters of the key, to tell keys apart.
    pub token_hint: String,
    #[serde(with = "crate::time::rfc3339_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_expire: Option<NaiveDateTime>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
    #[serde(skip)]
    pub tm_delete: Option<NaiveDateTime>,
}

impl AccessKey {
    fn cursor(&self) -> Cursor {
        Cursor { tm_create: self.tm_create, id: self.id.to_string() }
    }

    /// Usable now: not revoked and not expired.
    pub fn is_active(&self, now: NaiveDateTime) -> bool {
        self.tm_delete.is_none() && self.tm_expire.is_none_or(|t| t > now)
    }
}

#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = accesskeys)]
pub struct AccessKeyChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
}

pub fn insert(conn: &mut DbConn, key: &AccessKey) -> Result<(), DbError> {
    diesel::insert_into(accesskeys::table).values(key).execute(conn)?;
    Ok(())
}

/// The key with this hash, revoked or not (the caller checks [`AccessKey::is_active`]).
pub fn find_by_hash(conn: &mut DbConn, token_hash: &str) -> Result<AccessKey, DbError> {
    Ok(accesskeys::table.filter(accesskeys::token_hash.eq(token_hash)).select(AccessKey::as_select()).first(conn)?)
}

pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &AccessKeyId) -> Result<AccessKey, DbError> {
    Ok(accesskeys::table
        .find(id)
        .filter(accesskeys::customer_id.eq(customer_id))
        .filter(accesskeys::tm_delete.is_null())
        .select(AccessKey::as_select())
        .first(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<AccessKey>, DbError> {
    let query = accesskeys::table
        .filter(accesskeys::customer_id.eq(customer_id))
        .filter(accesskeys::tm_delete.is_null())
        .into_boxed();
    let rows = crate::paginate!(query, accesskeys, page).select(AccessKey::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, AccessKey::cursor))
}

pub fn update(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &AccessKeyId,
    changes: &AccessKeyChanges,
) -> Result<AccessKey, DbError> {
    get(conn, customer_id, id)?;
    diesel::update(accesskeys::table.find(id))
        .set((changes, accesskeys::tm_update.eq(crate::time::now())))
        .execute(conn)?;
    get(conn, customer_id, id)
}

/// Revokes the key: it stops authenticating and leaves the lists.
pub fn revoke(conn: &mut DbConn, customer_id: &CustomerId, id: &AccessKeyId) -> Result<AccessKey, DbError> {
    let key = get(conn, customer_id, id)?;
    let now = crate::time::now();
    diesel::update(accesskeys::table.find(id))
        .set((accesskeys::tm_delete.eq(now), accesskeys::tm_update.eq(now)))
        .execute(conn)?;
    Ok(AccessKey { tm_delete: Some(now), tm_update: now, ..key })
}
