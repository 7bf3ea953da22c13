//! `/v1.0/billing_account` and `/v1.0/billings` (the caller's money), and the
//! super-admin's `/v1.0/billing_accounts`.

use actix_web::{HttpResponse, get, post, web};
use callplane_schema::ids::{BillingAccountId, CustomerId};
use callplane_schema::models::billing::{self, Billing, ReferenceType};
use callplane_schema::models::billing_account::{self, BillingAccount};
use callplane_schema::models::event::NewEvent;
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::ListQuery;
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(get_own_billing_account)
        .service(list_billings)
        .service(list_billing_accounts)
        .service(get_billing_account)
        .service(add_balance)
        .service(subtract_balance);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BalanceChange {
    /// Micro-units, more than zero.
    amount: i64,
    /// Why, for the ledger's readers.
    #[serde(default)]
    detail: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AccountFilter {
    customer_id: Option<CustomerId>,
}

/// The caller's balance and rates.
#[utoipa::path(tag = "billing", security(("bearer" = [])), responses((status = 200, body = BillingAccount)))]
#[get("/billing_account")]
async fn get_own_billing_account(ctx: web::Data<AppContext>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::BillingRead)?.clone();
    let account = ctx
        .db
        .read(move |conn| billing_account::get_by_customer(conn, &customer_id))
        .await
        .or_not_found(Reason::BillingAccountNotFound)?;
    Ok(HttpResponse::Ok().json(account.view()))
}

/// The ledger: one row per charge or credit, newest first.
#[utoipa::path(tag = "billing", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Billing>))))]
#[get("/billings")]
async fn list_billings(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::BillingRead)?.clone();
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| billing::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Every customer's billing account (super-admin); `customer_id` narrows to one.
#[utoipa::path(tag = "billing", security(("bearer" = [])), params(AccountFilter), responses((status = 200, body = inline(Page<BillingAccount>))))]
#[get("/billing_accounts")]
async fn list_billing_accounts(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
    filter: web::Query<AccountFilter>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let page = query.page()?;
    let customer_id = filter.into_inner().customer_id;
    let rows = ctx.db.read(move |conn| billing_account::list(conn, customer_id.as_ref(), &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|a| a.view())))
}

#[utoipa::path(tag = "billing", security(("bearer" = [])), responses((status = 200, body = BillingAccount), (status = 404)))]
#[get("/billing_accounts/{id}")]
async fn get_billing_account(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<BillingAccountId>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let id = id.into_inner();
    let account =
        ctx.db.read(move |conn| billing_account::get(conn, &id)).await.or_not_found(Reason::BillingAccountNotFound)?;
    Ok(HttpResponse::Ok().json(account.view()))
}

/// Credits the account (super-admin). Calls in progress get the new cut-off at once.
#[utoipa::path(tag = "billing", security(("bearer" = [])), request_body = BalanceChange, responses((status = 200, body = BillingAccount)))]
#[post("/billing_accounts/{id}/balance_add")]
async fn add_balance(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<BillingAccountId>,
    body: web::Json<BalanceChange>,
) -> Result<HttpResponse, ApiError> {
    adjust(&ctx, &auth, id.into_inner(), body.into_inner(), 1).await
}

/// Debits the account (super-admin); never below zero.
#[utoipa::path(tag = "billing", security(("bearer" = [])), request_body = BalanceChange, responses((status = 200, body = BillingAccount), (status = 409, description = "BALANCE_TOO_LOW")))]
#[post("/billing_accounts/{id}/balance_subtract")]
async fn subtract_balance(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<BillingAccountId>,
    body: web::Json<BalanceChange>,
) -> Result<HttpResponse, ApiError> {
    adjust(&ctx, &auth, id.into_inner(), body.into_inner(), -1).await
}

/// Writes an adjustment of `sign * amount` to the ledger and the balance.
async fn adjust(
    ctx: &AppContext,
    auth: &Auth,
    id: BillingAccountId,
    change: BalanceChange,
    sign: i64,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    if change.amount <= 0 {
        return Err(ApiError::invalid("amount: more than zero micro-units"));
    }
    crate::validate::text("detail", &change.detail, 1024)?;
    let amount = sign * change.amount;
    let account = ctx
        .db
        .write(move |tx| {
            let account = billing_account::get(tx.conn, &id)?;
            if account.balance + amount < 0 {
                return Ok(Err(ApiError::new(Reason::BalanceTooLow)
                    .message(format!("the balance is {} micro-units", account.balance))));
            }
            let reference = callplane_schema::ids::BillingId::new();
            let (row, account) = billing::post(
                tx.conn,
                &account.customer_id,
                ReferenceType::Adjustment,
                reference.as_str(),
                1,
                amount,
                amount,
            )?;
            tx.emit(NewEvent::new("billing.created", Some(&row.customer_id), &row.id, &row)?)?;
            Ok(Ok(account.view()))
        })
        .await
        .or_not_found(Reason::BillingAccountNotFound)??;
    log::info!("billing account {} adjusted by {amount}", account.id);
    Ok(HttpResponse::Ok().json(account))
}
