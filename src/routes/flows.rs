//! `/v1.0/flows`: saved call flows, checked when they are saved; and
//! `/v1.0/customer/flow_secret`, the secret `webhook_send` actions sign with.

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_schema::ids::{CustomerId, FlowId};
use callplane_schema::models::action::{self, Action, ActionKind};
use callplane_schema::models::address::AddressType;
use callplane_schema::models::conference;
use callplane_schema::models::flow::{self, Flow, FlowChanges, FlowRow};
use callplane_schema::models::flow_secret::{self, FlowSecret};
use callplane_schema::page::Page;
use serde::Deserialize;
use serde_json::Value;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created};
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_flow)
        .service(list_flows)
        .service(get_flow)
        .service(update_flow)
        .service(delete_flow)
        .service(get_flow_secret)
        .service(rotate_flow_secret);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateFlow {
    #[serde(default)]
    name: String,
    #[serde(default)]
    detail: String,
    /// `[{"id"?, "next_id"?, "type", "option"}]`; ids are generated when absent.
    #[schema(value_type = Vec<Object>)]
    actions: Vec<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateFlow {
    name: Option<String>,
    detail: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    actions: Option<Vec<Value>>,
}

/// Parses and checks actions (a saved flow's, or a call's inline ones): the checks of
/// [`action::parse`], then address syntax, `webhook_send` targets, and that
/// `conference_join` names one of the customer's conferences.
pub(crate) async fn check_actions(
    ctx: &AppContext,
    customer_id: &CustomerId,
    raw: &[Value],
) -> Result<Vec<Action>, ApiError> {
    let actions = action::parse(raw).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut conferences = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        if let ActionKind::ConferenceJoin(join) = &action.kind {
            conferences.push((i, join.conference_id.clone()));
        }
        for (field, address) in action::addresses(action) {
            let field = format!("actions[{i}].{field}");
            if let ActionKind::MessageSend(_) = action.kind
                && address.kind != AddressType::Tel
            {
                return Err(ApiError::invalid(format!("{field}.type: messages go to `tel` addresses")));
            }
            if address.kind == AddressType::Conference {
                return Err(ApiError::invalid(format!("{field}.type: use `conference_join` for conferences")));
            }
            // A target made of variables is checked when the action runs.
            if !address.target.contains("${") {
                validate::address(&field, address)?;
            }
        }
        if let ActionKind::WebhookSend(send) = &action.kind
            && !ctx.settings.webhook_allow_private
            && !send.uri.contains("${")
        {
            let host = send.uri.parse::<actix_web::http::Uri>().ok().and_then(|u| u.host().map(str::to_owned));
            match host {
                None => return Err(ApiError::invalid(format!("actions[{i}].option.uri: not a URL"))),
                Some(host) if callplane_actors::outbound::refused_host(&host) => {
                    return Err(ApiError::invalid(format!(
                        "actions[{i}].option.uri: {host} is not a public address (CALLPLANE_WEBHOOK_ALLOW_PRIVATE)"
                    )));
                }
                Some(_) => {}
            }
        }
    }
    if !conferences.is_empty() {
        let customer_id = customer_id.clone();
        let missing = ctx
            .db
            .read(move |conn| {
                for (i, id) in &conferences {
                    match conference::get(conn, &customer_id, id) {
                        Ok(_) => {}
                        Err(callplane_schema::DbError::NotFound) => return Ok(Some(*i)),
                        Err(e) => return Err(e),
                    }
                }
                Ok(None)
            })
            .await?;
        if let Some(i) = missing {
            return Err(ApiError::invalid(format!(
                "actions[{i}].option.conference_id: no such conference in this customer"
            )));
        }
    }
    Ok(actions)
}

/// `flow_id` (of a call, a number, a conference) must name one of the caller's flows.
pub(crate) async fn check_owned_flow(
    ctx: &AppContext,
    customer_id: &CustomerId,
    field: &str,
    flow_id: Option<&FlowId>,
) -> Result<(), ApiError> {
    let Some(flow_id) = flow_id.cloned() else { return Ok(()) };
    let customer_id = customer_id.clone();
    match ctx.db.read(move |conn| flow::get(conn, &customer_id, &flow_id).map(|f| f.id)).await {
        Ok(_) => Ok(()),
        Err(callplane_schema::DbError::NotFound) => {
            Err(ApiError::invalid(format!("{field}: no such flow in this customer")))
        }
        Err(e) => Err(e.into()),
    }
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

/// Saves a flow. Every action is checked; a refusal names the action by its index and id.
#[utoipa::path(
    tag = "flows", security(("bearer" = [])), request_body = CreateFlow,
    responses((status = 201, body = Flow), (status = 400))
)]
#[post("/flows")]
async fn create_flow(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateFlow>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let body = body.into_inner();
    check_texts(Some(&body.name), Some(&body.detail))?;
    let actions = check_actions(&ctx, &customer_id, &body.actions).await?;
    let row = FlowRow::new(customer_id, body.name, body.detail, &actions);
    let view = row.view();
    ctx.db.write(move |tx| flow::insert(tx.conn, &row)).await?;
    Ok(created(format!("/v1.0/flows/{}", view.id), &view))
}

#[utoipa::path(tag = "flows", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Flow>))))]
#[get("/flows")]
async fn list_flows(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowRead)?.clone();
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| flow::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

#[utoipa::path(tag = "flows", security(("bearer" = [])), responses((status = 200, body = Flow), (status = 404)))]
#[get("/flows/{id}")]
async fn get_flow(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<FlowId>) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowRead)?.clone();
    let id = id.into_inner();
    let row = ctx.db.read(move |conn| flow::get(conn, &customer_id, &id)).await.or_not_found(Reason::FlowNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Changes name, detail or actions. Runs already going keep the actions they began with.
#[utoipa::path(tag = "flows", security(("bearer" = [])), request_body = UpdateFlow, responses((status = 200, body = Flow), (status = 404)))]
#[put("/flows/{id}")]
async fn update_flow(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<FlowId>,
    body: web::Json<UpdateFlow>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let id = id.into_inner();
    let body = body.into_inner();
    check_texts(body.name.as_deref(), body.detail.as_deref())?;
    let actions = match &body.actions {
        Some(raw) => Some(action::to_json(&check_actions(&ctx, &customer_id, raw).await?)),
        None => None,
    };
    let changes = FlowChanges { name: body.name, detail: body.detail, actions };
    let row = ctx
        .db
        .write(move |tx| flow::update(tx.conn, &customer_id, &id, &changes))
        .await
        .or_not_found(Reason::FlowNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Deletes a flow. Numbers and conferences that name it play nothing in its place.
#[utoipa::path(tag = "flows", security(("bearer" = [])), responses((status = 200, body = Flow), (status = 404)))]
#[delete("/flows/{id}")]
async fn delete_flow(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<FlowId>) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let id = id.into_inner();
    let row = ctx
        .db
        .write(move |tx| flow::soft_delete(tx.conn, &customer_id, &id))
        .await
        .or_not_found(Reason::FlowNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// The secret `webhook_send` requests are signed with (`X-VoIPBIN-Signature`, as for
/// webhooks), made on first use.
#[utoipa::path(tag = "flows", security(("bearer" = [])), responses((status = 200, body = FlowSecret)))]
#[get("/customer/flow_secret")]
async fn get_flow_secret(ctx: web::Data<AppContext>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let reader = customer_id.clone();
    if let Some(secret) = ctx.db.read(move |conn| flow_secret::get(conn, &reader)).await? {
        return Ok(HttpResponse::Ok().json(secret));
    }
    let fresh = callplane_actors::flow::new_signing_secret();
    let secret = ctx.db.write(move |tx| flow_secret::get_or_insert(tx.conn, &customer_id, &fresh)).await?;
    Ok(HttpResponse::Ok().json(secret))
}

/// Replaces the secret; requests from now on are signed with the new one.
#[utoipa::path(tag = "flows", security(("bearer" = [])), responses((status = 200, body = FlowSecret)))]
#[post("/customer/flow_secret")]
async fn rotate_flow_secret(ctx: web::Data<AppContext>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let fresh = callplane_actors::flow::new_signing_secret();
    let secret = ctx.db.write(move |tx| flow_secret::rotate(tx.conn, &customer_id, &fresh)).await?;
    Ok(HttpResponse::Ok().json(secret))
}
