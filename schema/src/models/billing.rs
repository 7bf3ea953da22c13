//! The billing ledger: one row per charge or credit. Money moves only here, and always
//! in the transaction that writes the row: `UPDATE … SET balance = balance + amount` is
//! atomic on every backend, so concurrent charges never lose each other.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{BillingAccountId, BillingId, CustomerId};
use crate::models::billing_account::{self, BillingAccountRow};
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::{billing_accounts, billings};

crate::text_enum!(
    ReferenceType {
        Call = "call",
        Sms = "sms",
        Adjustment = "adjustment",
    }
);

crate::text_enum!(
    BillingStatus {
        /// A call being billed: opened at answer, finished at the end.
        Progressing = "progressing",
        Finished = "finished",
    }
);

#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[diesel(table_name = billings)]
pub struct Billing {
    pub id: BillingId,
    pub customer_id: CustomerId,
    pub billing_account_id: BillingAccountId,
    pub reference_type: ReferenceType,
    pub reference_id: String,
    pub status: BillingStatus,
    /// Units charged: started minutes (or seconds) of a call, destinations of a message.
    pub units: i64,
    /// Micro-units per unit.
    pub rate: i64,
    /// The change to the balance: negative for a charge, positive for a credit.
    pub amount: i64,
    pub balance_after: i64,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

/// Adds `amount` (negative to charge) to the customer's balance; the account after.
fn move_money(conn: &mut DbConn, customer_id: &CustomerId, amount: i64) -> Result<BillingAccountRow, DbError> {
    let touched = diesel::update(billing_accounts::table.filter(billing_accounts::customer_id.eq(customer_id)))
        .set((
            billing_accounts::balance.eq(billing_accounts::balance + amount),
            billing_accounts::tm_update.eq(crate::time::now()),
        ))
        .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    billing_account::get_by_customer(conn, customer_id)
}

/// Opens a progressing row (a call was answered at `started`, which becomes the row's
/// `tm_create`: its units count from then); no money moves yet.
pub fn open(
    conn: &mut DbConn,
    account: &BillingAccountRow,
    reference_type: ReferenceType,
    reference_id: &str,
    rate: i64,
    started: NaiveDateTime,
) -> Result<Billing, DbError> {
    let now = started;
    let row = Billing {
        id: BillingId::new(),
        customer_id: account.customer_id.clone(),
        billing_account_id: account.id.clone(),
        reference_type,
        reference_id: reference_id.to_owned(),
        status: BillingStatus::Progressing,
        units: 0,
        rate,
        amount: 0,
        balance_after: account.balance,
        tm_create: now,
        tm_update: now,
    };
    diesel::insert_into(billings::table).values(&row).execute(conn)?;
    Ok(row)
}

/// Finishes a progressing row: charges `units` at its rate.
pub fn finish(conn: &mut DbConn, billing: &Billing, units: i64) -> Result<(Billing, BillingAccountRow), DbError> {
    let amount = -units.saturating_mul(billing.rate);
    let account = move_money(conn, &billing.customer_id, amount)?;
    let finished = Billing {
        status: BillingStatus::Finished,
        units,
        amount,
        balance_after: account.balance,
        tm_update: crate::time::now(),
        ..billing.clone()
    };
    diesel::update(billings::table.find(&billing.id))
        .set((
            billings::status.eq(finished.status),
            billings::units.eq(units),
            billings::amount.eq(amount),
            billings::balance_after.eq(finished.balance_after),
            billings::tm_update.eq(finished.tm_update),
        ))
        .execute(conn)?;
    Ok((finished, account))
}

/// A finished row in one step: a message's charge (`amount` = -units × rate) or an
/// adjustment (any signed amount).
pub fn post(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    reference_type: ReferenceType,
    reference_id: &str,
    units: i64,
    rate: i64,
    amount: i64,
) -> Result<(Billing, BillingAccountRow), DbError> {
    let account = move_money(conn, customer_id, amount)?;
    let now = crate::time::now();
    let row = Billing {
        id: BillingId::new(),
        customer_id: customer_id.clone(),
        billing_account_id: account.id.clone(),
        reference_type,
        reference_id: reference_id.to_owned(),
        status: BillingStatus::Finished,
        units,
        rate,
        amount,
        balance_after: account.balance,
        tm_create: now,
        tm_update: now,
    };
    diesel::insert_into(billings::table).values(&row).execute(conn)?;
    Ok((row, account))
}

pub fn find_by_reference(
    conn: &mut DbConn,
    reference_type: ReferenceType,
    reference_id: &str,
) -> Result<Option<Billing>, DbError> {
    Ok(billings::table
        .filter(billings::reference_type.eq(reference_type))
        .filter(billings::reference_id.eq(reference_id))
        .select(Billing::as_select())
        .first(conn)
        .optional()?)
}

/// Rows still open: the calls being billed.
pub fn list_progressing(conn: &mut DbConn) -> Result<Vec<Billing>, DbError> {
    Ok(billings::table
        .filter(billings::status.eq(BillingStatus::Progressing))
        .select(Billing::as_select())
        .load(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<Billing>, DbError> {
    let query = billings::table.filter(billings::customer_id.eq(customer_id)).into_boxed();
    let rows = crate::paginate!(query, billings, page).select(Billing::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |b: &Billing| Cursor { tm_create: b.tm_create, id: b.id.to_string() }))
}
