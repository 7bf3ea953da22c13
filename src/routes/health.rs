//! Liveness, readiness, metrics and the API description.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::context::AppContext;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(ping).service(healthz).service(readyz).service(metrics);
}

pub fn config_v1(cfg: &mut ServiceConfig) {
    cfg.service(openapi_json);
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Answers `pong`; no database, no authentication.
#[utoipa::path(tag = "health", responses((status = 200, description = "pong", body = String)))]
#[get("/ping")]
async fn ping() -> &'static str {
    "pong"
}

/// The process is alive.
#[utoipa::path(tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", reason: None })
}

/// Ready for traffic: the database answers and no migration is pending.
#[utoipa::path(tag = "health", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    match ctx.db.readiness().await {
        Ok(()) => HttpResponse::Ok().json(Health { status: "ok", reason: None }),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "1"))
            .json(Health { status: "unavailable", reason: Some(reason) }),
    }
}

/// Prometheus text format.
#[utoipa::path(tag = "health", responses((status = 200, description = "metrics", body = String)))]
#[get("/metrics")]
async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(ctx.metrics.render(ctx.db.pool_state()))
}

/// This document.
#[utoipa::path(tag = "health", responses((status = 200, description = "OpenAPI 3 description", body = Object)))]
#[get("/openapi.json")]
async fn openapi_json(ctx: web::Data<AppContext>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(ctx.api.openapi_json.clone())
}
