//! `/v1.0/webhooks`: a customer's endpoints for signed event deliveries, their secrets
//! and their delivery logs. Delivery itself is the domain's (`callplane_actors::webhook`).

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_actors::webhook::guard;
use callplane_schema::ids::WebhookId;
use callplane_schema::models::event;
use callplane_schema::models::webhook::{self, Webhook, WebhookChanges, WebhookMethod, WebhookRow};
use callplane_schema::models::webhook_delivery::{self, DeliveryAttempt};
use callplane_schema::page::Page;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created, optional_json};
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(rotate_webhook_secret)
        .service(list_webhook_deliveries);
}

/// Patterns per webhook at most.
const MAX_EVENT_TYPES: usize = 64;

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateWebhook {
    name: String,
    #[serde(default)]
    detail: String,
    /// `http` or `https`; a public address unless the operator allows private ones.
    uri: String,
    /// `POST` (the default) or `PUT`.
    method: Option<String>,
    /// `call.created`, `call.*` (every call event) or `*` (every event).
    event_types: Vec<String>,
    /// 16 to 256 characters; generated (32 random bytes, hex) when absent.
    secret: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateWebhook {
    name: Option<String>,
    detail: Option<String>,
    uri: Option<String>,
    method: Option<String>,
    event_types: Option<Vec<String>>,
    /// Not here: `POST /v1.0/webhooks/{id}/secret` rotates it.
    #[schema(value_type = Option<String>)]
    secret: Option<serde_json::Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RotateSecret {
    /// The new secret (16 to 256 characters); generated when absent.
    secret: Option<String>,
}

/// The answer to creation and rotation: the only ones that show the secret.
#[derive(Serialize, utoipa::ToSchema)]
struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: Webhook,
    /// Keys the HMAC-SHA256 of every delivery; store it now, it is not shown again.
    secret: String,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("name: required"));
    }
    validate::text("name", name, 255)
}

fn check_uri(ctx: &AppContext, uri: &str) -> Result<String, ApiError> {
    guard::check_uri(uri, ctx.settings.webhook_allow_private).map_err(|why| ApiError::invalid(format!("uri: {why}")))
}

fn parse_method(method: Option<&str>) -> Result<WebhookMethod, ApiError> {
    let Some(method) = method else { return Ok(WebhookMethod::Post) };
    method.to_ascii_uppercase().parse().map_err(|e| ApiError::invalid(format!("method: {e}")))
}

/// Each pattern checked, duplicates dropped, order kept.
fn check_event_types(patterns: Vec<String>) -> Result<Vec<String>, ApiError> {
    if patterns.is_empty() {
        return Err(ApiError::invalid("event_types: at least one, e.g. [\"call.*\"]"));
    }
    if patterns.len() > MAX_EVENT_TYPES {
        return Err(ApiError::invalid(format!("event_types: at most {MAX_EVENT_TYPES}")));
    }
    let mut kept: Vec<String> = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.into_iter().enumerate() {
        webhook::check_pattern(&pattern).map_err(|why| ApiError::invalid(format!("event_types[{i}]: {why}")))?;
        if !kept.contains(&pattern) {
            kept.push(pattern);
        }
    }
    Ok(kept)
}

/// A given secret, or a new one: 32 random bytes, hex.
fn secret_or_new(secret: Option<String>) -> Result<String, ApiError> {
    match secret {
        Some(secret) => {
            let length = secret.chars().count();
            if !(16..=256).contains(&length) {
                return Err(ApiError::invalid("secret: 16 to 256 characters"));
            }
            if secret.chars().any(char::is_control) {
                return Err(ApiError::invalid("secret: control characters are not allowed"));
            }
            Ok(secret)
        }
        None => Ok(hex::encode(rand::random::<[u8; 32]>())),
    }
}

/// Creates a webhook. Only events committed after it are delivered to it.
#[utoipa::path(
    tag = "webhooks", security(("bearer" = [])), request_body = CreateWebhook,
    responses((status = 201, body = WebhookWithSecret), (status = 400, description = "INVALID_ARGUMENT, naming the field"))
)]
#[post("/webhooks")]
async fn create_webhook(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let body = body.into_inner();
    check_name(&body.name)?;
    validate::text("detail", &body.detail, 4096)?;
    let uri = check_uri(&ctx, &body.uri)?;
    let method = parse_method(body.method.as_deref())?;
    let event_types = check_event_types(body.event_types)?;
    let secret = secret_or_new(body.secret)?;
    let now = callplane_schema::time::now();
    let mut row = WebhookRow {
        id: WebhookId::new(),
        customer_id,
        name: body.name,
        detail: body.detail,
        uri,
        method,
        event_types: webhook::encode_patterns(&event_types),
        secret,
        since_seq: 0,
        tm_create: now,
        tm_update: now,
    };
    let row = ctx
        .db
        .write(move |tx| {
            // The writer commits one write at a time, so every event after this one is
            // committed after the webhook exists.
            row.since_seq = event::last_seq(tx.conn)?;
            webhook::insert(tx.conn, &row)?;
            Ok(row.clone())
        })
        .await?;
    // Not the URI: its query string may carry the receiver's own credentials.
    log::info!("webhook {} created", row.id);
    let answer = WebhookWithSecret { webhook: row.view(), secret: row.secret };
    Ok(created(format!("/v1.0/webhooks/{}", row.id), &answer))
}

/// The customer's webhooks, newest first.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Webhook>))))]
#[get("/webhooks")]
async fn list_webhooks(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| webhook::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

#[utoipa::path(tag = "webhooks", security(("bearer" = [])), responses((status = 200, body = Webhook), (status = 404)))]
#[get("/webhooks/{id}")]
async fn get_webhook(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let id = id.into_inner();
    let row =
        ctx.db.read(move |conn| webhook::get(conn, &customer_id, &id)).await.or_not_found(Reason::WebhookNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Changes name, detail, uri, method or event types. Pending deliveries go to the new
/// uri; the new event types apply to events from now on.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), request_body = UpdateWebhook, responses((status = 200, body = Webhook), (status = 404)))]
#[put("/webhooks/{id}")]
async fn update_webhook(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<WebhookId>,
    body: web::Json<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let id = id.into_inner();
    let body = body.into_inner();
    if body.secret.is_some() {
        return Err(ApiError::invalid("secret: rotate it with POST /v1.0/webhooks/{id}/secret"));
    }
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(detail) = &body.detail {
        validate::text("detail", detail, 4096)?;
    }
    let changes = WebhookChanges {
        name: body.name,
        detail: body.detail,
        uri: body.uri.as_deref().map(|uri| check_uri(&ctx, uri)).transpose()?,
        method: body.method.as_deref().map(|m| parse_method(Some(m))).transpose()?,
        event_types: body.event_types.map(check_event_types).transpose()?.map(|p| webhook::encode_patterns(&p)),
        secret: None,
    };
    let row = ctx
        .db
        .write(move |tx| webhook::update(tx.conn, &customer_id, &id, &changes))
        .await
        .or_not_found(Reason::WebhookNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Deletes a webhook with its pending deliveries and its delivery log.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), responses((status = 200, body = Webhook), (status = 404)))]
#[delete("/webhooks/{id}")]
async fn delete_webhook(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let id = id.into_inner();
    let row = ctx
        .db
        .write(move |tx| webhook::delete(tx.conn, &customer_id, &id))
        .await
        .or_not_found(Reason::WebhookNotFound)?;
    log::info!("webhook {} deleted", row.id);
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Replaces the secret (with the one given, or a new random one) and answers it. The
/// next delivery, retries included, is signed with it.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), request_body = RotateSecret, responses((status = 200, body = WebhookWithSecret), (status = 404)))]
#[post("/webhooks/{id}/secret")]
async fn rotate_webhook_secret(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<WebhookId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let id = id.into_inner();
    let given = optional_json::<RotateSecret>(&body)?.and_then(|b| b.secret);
    let secret = secret_or_new(given)?;
    let changes = WebhookChanges { secret: Some(secret), ..Default::default() };
    let row = ctx
        .db
        .write(move |tx| webhook::update(tx.conn, &customer_id, &id, &changes))
        .await
        .or_not_found(Reason::WebhookNotFound)?;
    log::info!("webhook {}: secret rotated", row.id);
    Ok(HttpResponse::Ok().json(WebhookWithSecret { webhook: row.view(), secret: row.secret }))
}

/// The delivery log, newest first: one line per attempt (event, attempt number, the
/// receiver's status or the error, latency, the next retry) with the delivery's status
/// after it; deliveries given up on end with a `failed` line.
#[utoipa::path(tag = "webhooks", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<DeliveryAttempt>)), (status = 404)))]
#[get("/webhooks/{id}/deliveries")]
async fn list_webhook_deliveries(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<WebhookId>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::WebhookManage)?.clone();
    let id = id.into_inner();
    let page = query.page()?;
    let log = ctx
        .db
        .read(move |conn| {
            webhook::get(conn, &customer_id, &id)?;
            webhook_delivery::list_attempts(conn, &id, &page)
        })
        .await
        .or_not_found(Reason::WebhookNotFound)?;
    Ok(HttpResponse::Ok().json(log))
}
