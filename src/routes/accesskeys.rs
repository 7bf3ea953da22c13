//! `/v1.0/accesskeys`: long-lived keys acting as the customer's admin.

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_schema::ids::AccessKeyId;
use callplane_schema::models::accesskey::{self, AccessKey, AccessKeyChanges};
use callplane_schema::page::Page;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created};
use crate::auth::{self, Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_accesskey)
        .service(list_accesskeys)
        .service(get_accesskey)
        .service(update_accesskey)
        .service(delete_accesskey);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateAccessKey {
    #[serde(default)]
    name: String,
    #[serde(default)]
    detail: String,
    /// Lifetime in seconds; absent or 0 for a key that does not expire.
    #[serde(default)]
    expire: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateAccessKey {
    name: Option<String>,
    detail: Option<String>,
}

/// The create answer: the key itself appears here and nowhere else.
#[derive(Serialize, utoipa::ToSchema)]
struct CreatedAccessKey {
    #[serde(flatten)]
    key: AccessKey,
    /// The key; store it now, it is not shown again.
    token: String,
}

/// Longest lifetime accepted: ten years.
const MAX_EXPIRE_SECS: u64 = 10 * 365 * 24 * 3600;

/// Creates a key and returns it once.
#[utoipa::path(tag = "accesskeys", security(("bearer" = [])), request_body = CreateAccessKey, responses((status = 201, body = CreatedAccessKey)))]
#[post("/accesskeys")]
async fn create_accesskey(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateAccessKey>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AccesskeyManage)?.clone();
    let body = body.into_inner();
    validate::text("name", &body.name, 255)?;
    validate::text("detail", &body.detail, 4096)?;
    if body.expire > MAX_EXPIRE_SECS {
        return Err(ApiError::invalid(format!("expire: at most {MAX_EXPIRE_SECS} seconds")));
    }
    let token = auth::accesskey::generate();
    let key = auth::accesskey::row(&customer_id, &token, body.name, body.detail, body.expire);
    let row = key.clone();
    ctx.db.write(move |tx| accesskey::insert(tx.conn, &row)).await?;
    Ok(created(format!("/v1.0/accesskeys/{}", key.id), &CreatedAccessKey { key, token }))
}

#[utoipa::path(tag = "accesskeys", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<AccessKey>))))]
#[get("/accesskeys")]
async fn list_accesskeys(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AccesskeyManage)?.clone();
    let page = query.page()?;
    let keys = ctx.db.read(move |conn| accesskey::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(keys))
}

#[utoipa::path(tag = "accesskeys", security(("bearer" = [])), responses((status = 200, body = AccessKey), (status = 404)))]
#[get("/accesskeys/{id}")]
async fn get_accesskey(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AccessKeyId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AccesskeyManage)?.clone();
    let id = id.into_inner();
    let key = ctx
        .db
        .read(move |conn| accesskey::get(conn, &customer_id, &id))
        .await
        .or_not_found(Reason::AccesskeyNotFound)?;
    Ok(HttpResponse::Ok().json(key))
}

#[utoipa::path(tag = "accesskeys", security(("bearer" = [])), request_body = UpdateAccessKey, responses((status = 200, body = AccessKey)))]
#[put("/accesskeys/{id}")]
async fn update_accesskey(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AccessKeyId>,
    body: web::Json<UpdateAccessKey>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AccesskeyManage)?.clone();
    let id = id.into_inner();
    let body = body.into_inner();
    if let Some(name) = &body.name {
        validate::text("name", name, 255)?;
    }
    if let Some(detail) = &body.detail {
        validate::text("detail", detail, 4096)?;
    }
    let changes = AccessKeyChanges { name: body.name, detail: body.detail };
    let key = ctx
        .db
        .write(move |tx| accesskey::update(tx.conn, &customer_id, &id, &changes))
        .await
        .or_not_found(Reason::AccesskeyNotFound)?;
    Ok(HttpResponse::Ok().json(key))
}

/// Revokes a key: from now on it is a 401.
#[utoipa::path(tag = "accesskeys", security(("bearer" = [])), responses((status = 200, body = AccessKey)))]
#[delete("/accesskeys/{id}")]
async fn delete_accesskey(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AccessKeyId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AccesskeyManage)?.clone();
    let id = id.into_inner();
    let key = ctx
        .db
        .write(move |tx| accesskey::revoke(tx.conn, &customer_id, &id))
        .await
        .or_not_found(Reason::AccesskeyNotFound)?;
    ctx.auth.forget_key(&key.token_hash);
    Ok(HttpResponse::Ok().json(key))
}
