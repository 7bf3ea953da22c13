//! Customers: the tenants. Deleting one is a soft delete: its history stays, its
//! credentials stop working.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::CustomerId;
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::customers;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = customers)]
pub struct Customer {
    pub id: CustomerId,
    pub name: String,
    pub detail: String,
    pub email: String,
    pub phone_number: String,
    pub address: String,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
    #[serde(skip)]
    pub tm_delete: Option<NaiveDateTime>,
}

impl Customer {
    pub fn new(name: impl Into<String>) -> Customer {
        let now = crate::time::now();
        Customer {
            id: CustomerId::new(),
            name: name.into(),
            detail: String::new(),
            email: String::new(),
            phone_number: String::new(),
            address: String::new(),
            tm_create: now,
            tm_update: now,
            tm_delete: None,
        }
    }

    fn cursor(&self) -> Cursor {
        Cursor { tm_create: self.tm_create, id: self.id.to_string() }
    }
}

/// The fields a customer or a super-admin may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = customers)]
pub struct CustomerChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub address: Option<String>,
}

pub fn insert(conn: &mut DbConn, customer: &Customer) -> Result<(), DbError> {
    diesel::insert_into(customers::table).values(customer).execute(conn)?;
    Ok(())
}

/// A customer that has not been deleted.
pub fn get(conn: &mut DbConn, id: &CustomerId) -> Result<Customer, DbError> {
    Ok(customers::table.find(id).filter(customers::tm_delete.is_null()).select(Customer::as_select()).first(conn)?)
}

pub fn list(conn: &mut DbConn, page: &PageRequest) -> Result<Page<Customer>, DbError> {
    let query = customers::table.filter(customers::tm_delete.is_null()).into_boxed();
    let rows = crate::paginate!(query, customers, page).select(Customer::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, Customer::cursor))
}

pub fn count(conn: &mut DbConn) -> Result<i64, DbError> {
    Ok(customers::table.count().get_result(conn)?)
}

pub fn update(conn: &mut DbConn, id: &CustomerId, changes: &CustomerChanges) -> Result<Customer, DbError> {
    let touched = diesel::update(customers::table.find(id).filter(customers::tm_delete.is_null()))
        .set((changes, customers::tm_update.eq(crate::time::now())))
        .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    get(conn, id)
}

pub fn soft_delete(conn: &mut DbConn, id: &CustomerId) -> Result<Customer, DbError> {
    let customer = get(conn, id)?;
    let now = crate::time::now();
    diesel::update(customers::table.find(id))
        .set((customers::tm_delete.eq(now), customers::tm_update.eq(now)))
        .execute(conn)?;
    Ok(Customer { tm_delete: Some(now), tm_update: now, ..customer })
}
