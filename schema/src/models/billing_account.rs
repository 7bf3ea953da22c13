//! Billing accounts: one per customer, holding a prepaid balance in micro-units
//! (1 USD = 1,000,000) and the rates its calls and messages are charged at.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{BillingAccountId, CustomerId};
use crate::models::address::AddressType;
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::billing_accounts;

/// Price per unit in micro-units: per started minute (or second, when the operator bills
/// per second) for calls, by destination type, and per destination for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Rates {
    pub call_tel: i64,
    pub call_sip: i64,
    pub call_agent: i64,
    pub call_extension: i64,
    pub call_conference: i64,
    pub sms: i64,
}

impl Default for Rates {
    /// Close to VoIPBIN's published prices: a cent a minute to the phone network,
    /// internal destinations free.
    fn default() -> Self {
        Rates { call_tel: 10_000, call_sip: 0, call_agent: 0, call_extension: 0, call_conference: 0, sms: 8_000 }
    }
}

impl Rates {
    pub fn call(&self, destination: AddressType) -> i64 {
        match destination {
            AddressType::Tel => self.call_tel,
            AddressType::Sip => self.call_sip,
            AddressType::Agent => self.call_agent,
            AddressType::Extension => self.call_extension,
            AddressType::Conference => self.call_conference,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = billing_accounts)]
pub struct BillingAccountRow {
    pub id: BillingAccountId,
    pub customer_id: CustomerId,
    pub balance: i64,
    pub currency: String,
    /// JSON of [`Rates`].
    pub rates: String,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
    /// Held by calls in progress (each its first unit), not yet charged.
    pub reserved: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BillingAccount {
    pub id: BillingAccountId,
    pub customer_id: CustomerId,
    /// Micro-units of `currency`.
    pub balance: i64,
    /// Held by calls in progress (the first unit of each); new calls and messages need
    /// `balance - reserved`.
    pub reserved: i64,
    pub currency: String,
    pub rates: Rates,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl BillingAccountRow {
    pub fn new(customer_id: CustomerId, balance: i64, rates: &Rates) -> BillingAccountRow {
        let now = crate::time::now();
        BillingAccountRow {
            id: BillingAccountId::new(),
            customer_id,
            balance,
            currency: "USD".to_owned(),
            rates: serde_json::to_string(rates).unwrap_or_else(|_| "{}".to_owned()),
            tm_create: now,
            tm_update: now,
            reserved: 0,
        }
    }

    /// What new calls and messages may use.
    pub fn available(&self) -> i64 {
        self.balance - self.reserved
    }

    pub fn rates(&self) -> Rates {
        // Written only by this module from a `Rates`; unknown or missing keys default.
        serde_json::from_str(&self.rates).unwrap_or_default()
    }

    pub fn view(&self) -> BillingAccount {
        BillingAccount {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            balance: self.balance,
            reserved: self.reserved,
            currency: self.currency.clone(),
            rates: self.rates(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }
}

pub fn insert(conn: &mut DbConn, account: &BillingAccountRow) -> Result<(), DbError> {
    diesel::insert_into(billing_accounts::table).values(account).execute(conn)?;
    Ok(())
}

pub fn get_by_customer(conn: &mut DbConn, customer_id: &CustomerId) -> Result<BillingAccountRow, DbError> {
    Ok(billing_accounts::table
        .filter(billing_accounts::customer_id.eq(customer_id))
        .select(BillingAccountRow::as_select())
        .first(conn)?)
}

/// Holds (positive) or releases (negative) `amount` of the customer's balance.
pub fn reserve(conn: &mut DbConn, customer_id: &CustomerId, amount: i64) -> Result<(), DbError> {
    diesel::update(billing_accounts::table.filter(billing_accounts::customer_id.eq(customer_id)))
        .set(billing_accounts::reserved.eq(billing_accounts::reserved + amount))
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut DbConn, id: &BillingAccountId) -> Result<BillingAccountRow, DbError> {
    Ok(billing_accounts::table.find(id).select(BillingAccountRow::as_select()).first(conn)?)
}

/// Every account, or one customer's.
pub fn list(
    conn: &mut DbConn,
    customer_id: Option<&CustomerId>,
    page: &PageRequest,
) -> Result<Page<BillingAccountRow>, DbError> {
    let mut query = billing_accounts::table.into_boxed();
    if let Some(customer_id) = customer_id {
        query = query.filter(billing_accounts::customer_id.eq(customer_id));
    }
    let rows = crate::paginate!(query, billing_accounts, page).select(BillingAccountRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |a: &BillingAccountRow| Cursor { tm_create: a.tm_create, id: a.id.to_string() }))
}
