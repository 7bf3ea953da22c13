//! `/v1.0/numbers`: the customer's phone numbers and the flows their incoming calls
//! (and messages) run. A number belongs to one customer at a time.

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_schema::DbError;
use callplane_schema::ids::{FlowId, NumberId};
use callplane_schema::models::number::{self, Number, NumberChanges};
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::flows::check_owned_flow;
use super::{ListQuery, created, nullable};
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_number).service(list_numbers).service(get_number).service(update_number).service(delete_number);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateNumber {
    /// E.164.
    number: String,
    call_flow_id: Option<FlowId>,
    message_flow_id: Option<FlowId>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    detail: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateNumber {
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    call_flow_id: Option<Option<FlowId>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    message_flow_id: Option<Option<FlowId>>,
    name: Option<String>,
    detail: Option<String>,
}

fn check_texts(name: Option<&str>, detail: Option<&str>) -> Result<(), ApiError> {
    if let Some(name) = name {
        validate::text("name", name, 255)?;
    }
    if let Some(detail) = detail {
        validate::text("detail", detail, 4096)?;
    }
    Ok(())
}

/// Takes a number for the customer; one another customer has is 409 `ALREADY_EXISTS`.
#[utoipa::path(
    tag = "numbers", security(("bearer" = [])), request_body = CreateNumber,
    responses((status = 201, body = Number), (status = 409, description = "ALREADY_EXISTS"))
)]
#[post("/numbers")]
async fn create_number(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateNumber>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::NumberManage)?.clone();
    let body = body.into_inner();
    if !validate::is_e164(&body.number) {
        return Err(ApiError::invalid(format!("number: {:?} is not an E.164 number", body.number)));
    }
    check_texts(Some(&body.name), Some(&body.detail))?;
    check_owned_flow(&ctx, &customer_id, "call_flow_id", body.call_flow_id.as_ref()).await?;
    check_owned_flow(&ctx, &customer_id, "message_flow_id", body.message_flow_id.as_ref()).await?;
    let now = callplane_schema::time::now();
    let row = Number {
        id: NumberId::new(),
        customer_id,
        number: body.number,
        call_flow_id: body.call_flow_id,
        message_flow_id: body.message_flow_id,
        name: body.name,
        detail: body.detail,
        tm_create: now,
        tm_update: now,
    };
    let stored = row.clone();
    ctx.db.write(move |tx| number::insert(tx.conn, &stored)).await.map_err(|e| match e {
        DbError::Conflict(_) => ApiError::new(Reason::AlreadyExists).message(format!("{} is taken", row.number)),
        e => e.into(),
    })?;
    Ok(created(format!("/v1.0/numbers/{}", row.id), &row))
}

#[utoipa::path(tag = "numbers", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Number>))))]
#[get("/numbers")]
async fn list_numbers(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::NumberRead)?.clone();
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| number::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[utoipa::path(tag = "numbers", security(("bearer" = [])), responses((status = 200, body = Number), (status = 404)))]
#[get("/numbers/{id}")]
async fn get_number(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<NumberId>) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::NumberRead)?.clone();
    let id = id.into_inner();
    let row =
        ctx.db.read(move |conn| number::get(conn, &customer_id, &id)).await.or_not_found(Reason::NumberNotFound)?;
    Ok(HttpResponse::Ok().json(row))
}

/// Changes the flows, name or detail (the number itself stays).
#[utoipa::path(tag = "numbers", security(("bearer" = [])), request_body = UpdateNumber, responses((status = 200, body = Number), (status = 404)))]
#[put("/numbers/{id}")]
async fn update_number(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<NumberId>,
    body: web::Json<UpdateNumber>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::NumberManage)?.clone();
    let id = id.into_inner();
    let body = body.into_inner();
    check_texts(body.name.as_deref(), body.detail.as_deref())?;
    check_owned_flow(&ctx, &customer_id, "call_flow_id", body.call_flow_id.as_ref().and_then(Option::as_ref)).await?;
    check_owned_flow(&ctx, &customer_id, "message_flow_id", body.message_flow_id.as_ref().and_then(Option::as_ref))
        .await?;
    let changes = NumberChanges {
        call_flow_id: body.call_flow_id,
        message_flow_id: body.message_flow_id,
        name: body.name,
        detail: body.detail,
    };
    let row = ctx
        .db
        .write(move |tx| number::update(tx.conn, &customer_id, &id, &changes))
        .await
        .or_not_found(Reason::NumberNotFound)?;
    Ok(HttpResponse::Ok().json(row))
}

/// Releases a number: another customer may take it from now on.
#[utoipa::path(tag = "numbers", security(("bearer" = [])), responses((status = 200, body = Number), (status = 404)))]
#[delete("/numbers/{id}")]
async fn delete_number(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<NumberId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::NumberManage)?.clone();
    let id = id.into_inner();
    let row = ctx
        .db
        .write(move |tx| number::delete(tx.conn, &customer_id, &id))
        .await
        .or_not_found(Reason::NumberNotFound)?;
    Ok(HttpResponse::Ok().json(row))
}
