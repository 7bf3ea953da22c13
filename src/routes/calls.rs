//! `/v1.0/calls`: place and steer calls. The gateway validates and authorises; the call
//! manager and the call's own actor do the rest, and their answer is returned as is.

use std::collections::BTreeMap;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use bytes::Bytes;
use callplane_actors::call::{CallCommand, CallError, Command, CreateCalls, IdempotencyKey, Routed};
use callplane_schema::ids::{CallId, ConferenceId, CustomerId, FlowId};
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::{self, Call, CallFilter, CallStatus, Direction, HangupReason, MuteDirection};
use callplane_schema::models::{agent, conference};
use callplane_schema::page::Page;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa_actix_web::service_config::ServiceConfig;

use super::ListQuery;
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_call)
        .service(list_calls)
        .service(get_call)
        .service(update_call)
        .service(delete_call)
        .service(hangup_call)
        .service(talk_call)
        .service(hold_call)
        .service(unhold_call)
        .service(mute_call)
        .service(unmute_call);
}

/// Destinations per create at most.
const MAX_DESTINATIONS: usize = 32;

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateCall {
    source: Address,
    destinations: Vec<Address>,
    /// A saved flow to run on each call.
    flow_id: Option<FlowId>,
    /// An inline flow to run on each call.
    #[schema(value_type = Option<Vec<Object>>)]
    actions: Option<Vec<serde_json::Value>>,
    /// Variables for the flow.
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CallListFilter {
    status: Option<CallStatus>,
    direction: Option<Direction>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateCall {
    /// Only `ended` (or `terminating`): hangs the call up.
    status: Option<CallStatus>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct TalkRequest {
    text: String,
    #[serde(default = "default_language")]
    language: String,
}

fn default_language() -> String {
    "en-US".to_owned()
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MuteRequest {
    #[serde(default = "both")]
    direction: MuteDirection,
}

fn both() -> MuteDirection {
    MuteDirection::Both
}

/// Places one call per destination. With one destination the answer is the call and a
/// `Location`; with several, `{"result": [...]}`. `Idempotency-Key` replays the first
/// answer for 24 hours.
#[utoipa::path(
    tag = "calls", security(("bearer" = [])), request_body = CreateCall,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 of [A-Za-z0-9_:-]")),
    responses(
        (status = 201, body = Call),
        (status = 402, description = "INSUFFICIENT_BALANCE"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED"),
    )
)]
#[post("/calls")]
async fn create_call(
    ctx: web::Data<AppContext>,
    auth: Auth,
    req: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::CallCreate)?.clone();
    let idempotency_key = idempotency_key(&req)?;
    let raw = body.into_inner();
    // Keys of a JSON object serialise sorted: the same request hashes the same.
    let request_hash = hex::encode(Sha256::digest(raw.to_string()));
    let create: CreateCall = serde_json::from_value(raw).map_err(|e| ApiError::invalid(e.to_string()))?;

    if create.destinations.is_empty() {
        return Err(ApiError::invalid("destinations: at least one"));
    }
    if create.destinations.len() > MAX_DESTINATIONS {
        return Err(ApiError::invalid(format!("destinations: at most {MAX_DESTINATIONS}")));
    }
    if create.variables.len() > 256 {
        return Err(ApiError::invalid("variables: at most 256"));
    }
    validate::address("source", &create.source)?;
    for (i, destination) in create.destinations.iter().enumerate() {
        validate::address(&format!("destinations[{i}]"), destination)?;
    }
    let addresses = std::iter::once(&create.source).chain(&create.destinations);
    check_owned_agents(&ctx, &customer_id, addresses).await?;
    if create.source.kind == AddressType::Conference {
        return Err(ApiError::invalid("source.type: a call comes from a party, not a conference"));
    }
    check_owned_conferences(&ctx, &customer_id, &create.destinations).await?;
    super::flows::check_owned_flow(&ctx, &customer_id, "flow_id", create.flow_id.as_ref()).await?;
    let actions = match &create.actions {
        Some(raw) if create.flow_id.is_some() && !raw.is_empty() => {
            return Err(ApiError::invalid("flow_id and actions: give one or the other"));
        }
        Some(raw) => super::flows::check_actions(&ctx, &customer_id, raw).await?,
        None => Vec::new(),
    };

    let message = CreateCalls {
        customer_id,
        source: create.source,
        destinations: create.destinations,
        flow_id: create.flow_id,
        actions: callplane_schema::models::action::to_json(&actions),
        variables: serde_json::to_string(&create.variables).map_err(ApiError::internal)?,
        owner_id: auth.agent_id().cloned(),
        idempotency: idempotency_key.map(|key| IdempotencyKey { key, request_hash }),
    };
    let answer = ctx.domain.calls.send(message).await.map_err(ApiError::internal)?.map_err(call_error)?;
    for call in &answer.calls {
        log::info!("call {} created to {}", call.id, call.destination.target);
    }
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).map_err(ApiError::internal)?);
    if let Some(location) = answer.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        response.insert_header((header::LOCATION, location));
    }
    Ok(response.content_type("application/json").body(answer.body))
}

/// `Idempotency-Key`: 1 to 255 of `[A-Za-z0-9_:-]`.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or_default();
    let valid = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b));
    if !valid {
        return Err(ApiError::invalid("Idempotency-Key: 1 to 255 of [A-Za-z0-9_:-]"));
    }
    Ok(Some(key.to_owned()))
}

/// `agent` addresses must name the caller's own agents.
pub(super) async fn check_owned_agents(
    ctx: &AppContext,
    customer_id: &CustomerId,
    addresses: impl Iterator<Item = &Address>,
) -> Result<(), ApiError> {
    let agents: Vec<_> =
        addresses.filter(|a| a.kind == AddressType::Agent).filter_map(|a| a.target.parse().ok()).collect();
    if agents.is_empty() {
        return Ok(());
    }
    let customer_id = customer_id.clone();
    let missing = ctx
        .db
        .read(move |conn| {
            for id in &agents {
                match agent::get(conn, &customer_id, id) {
                    Ok(_) => {}
                    Err(callplane_schema::DbError::NotFound) => return Ok(Some(id.clone())),
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        })
        .await?;
    match missing {
        Some(id) => Err(ApiError::invalid(format!("no agent {id} in this customer"))),
        None => Ok(()),
    }
}

/// `conference` destinations must name the caller's own conferences, still live; such a
/// call joins the conference when it is answered.
async fn check_owned_conferences(
    ctx: &AppContext,
    customer_id: &CustomerId,
    destinations: &[Address],
) -> Result<(), ApiError> {
    let wanted: Vec<(usize, ConferenceId)> = destinations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.kind == AddressType::Conference)
        .filter_map(|(i, a)| a.target.parse().ok().map(|id| (i, id)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let customer_id = customer_id.clone();
    let refused = ctx
        .db
        .read(move |conn| {
            for (i, id) in &wanted {
                match conference::get(conn, &customer_id, id) {
                    Ok(row) if row.status.is_live() => {}
                    Ok(_) => return Ok(Some(format!("destinations[{i}].target: conference {id} has ended"))),
                    Err(callplane_schema::DbError::NotFound) => {
                        return Ok(Some(format!("destinations[{i}].target: no conference {id} in this customer")));
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        })
        .await?;
    match refused {
        Some(message) => Err(ApiError::invalid(message)),
        None => Ok(()),
    }
}

pub(super) fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::NotFound | CallError::NotLive => ApiError::new(Reason::CallNotFound),
        CallError::StateInvalid { status } => {
            ApiError::new(Reason::CallStateInvalid).message(format!("not possible while the call is {status}"))
        }
        CallError::InsufficientBalance { balance, needed } => ApiError::new(Reason::InsufficientBalance)
            .message(format!(
                "the available balance ({balance} micros, after what calls in progress hold) does not cover one unit ({needed} micros)"
            )),
        CallError::IdempotencyKeyReused => ApiError::new(Reason::IdempotencyKeyReused),
        CallError::Media(cause) => ApiError::internal(cause),
        CallError::Db(e) => e.into(),
    }
}

/// The customer's calls, newest first; an `agent` sees only its own.
#[utoipa::path(
    tag = "calls", security(("bearer" = [])), params(ListQuery, CallListFilter),
    responses((status = 200, body = inline(Page<Call>)))
)]
#[get("/calls")]
async fn list_calls(
    ctx: web::Data<AppContext>,
    auth: Auth,
    page: web::Query<ListQuery>,
    filter: web::Query<CallListFilter>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::CallRead)?.clone();
    let page = page.page()?;
    let filter = CallFilter { status: filter.status, direction: filter.direction, agent: auth.own_only().cloned() };
    let rows = ctx.db.read(move |conn| call::list(conn, &customer_id, &filter, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

/// Who a cached call belongs to, read from its JSON.
#[derive(Deserialize)]
struct Owner {
    customer_id: CustomerId,
    source: OwnerAddress,
    destination: OwnerAddress,
}

#[derive(Deserialize)]
struct OwnerAddress {
    #[serde(rename = "type")]
    kind: AddressType,
    target: String,
}

/// A call, read through the cache (`call:<id>`, 300 s).
#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 404)))]
#[get("/calls/{id}")]
async fn get_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::CallRead)?;
    let id = id.into_inner();
    let key = callplane_actors::cache::key("call", id.as_str());
    let db = ctx.db.clone();
    let json = ctx
        .domain
        .cache
        .get_or_load(&key, || async move {
            match db.read(move |conn| call::get_any(conn, &id)).await {
                Ok(row) => serde_json::to_vec(&row.view()).map(|v| Some(Bytes::from(v))).map_err(ApiError::internal),
                Err(callplane_schema::DbError::NotFound) => Ok(None),
                Err(e) => Err(ApiError::from(e)),
            }
        })
        .await?
        .ok_or_else(|| ApiError::new(Reason::CallNotFound))?;
    let owner: Owner = serde_json::from_slice(&json).map_err(ApiError::internal)?;
    // Another customer's call is not found, cached or not.
    if owner.customer_id != *customer_id {
        return Err(ApiError::new(Reason::CallNotFound));
    }
    if let Some(agent) = auth.own_only() {
        let own = [&owner.source, &owner.destination]
            .iter()
            .any(|a| a.kind == AddressType::Agent && a.target == agent.as_str());
        if !own {
            return Err(ApiError::new(Reason::PermissionDenied).message("agents may read only their own calls"));
        }
    }
    Ok(HttpResponse::Ok().content_type("application/json").body(json))
}

/// Sends a command to the call's actor and returns the call as it left it.
async fn command(ctx: &AppContext, auth: &Auth, id: CallId, command: CallCommand) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::CallManage)?.clone();
    let routed = Routed(Command { call_id: id.clone(), customer_id: Some(customer_id.clone()), command });
    match ctx.domain.calls.send(routed).await.map_err(ApiError::internal)? {
        Ok(call) => Ok(HttpResponse::Ok().json(call)),
        // No actor: the call ended, or is not this customer's.
        Err(CallError::NotLive) => {
            let row =
                ctx.db.read(move |conn| call::get(conn, &customer_id, &id)).await.or_not_found(Reason::CallNotFound)?;
            Err(call_error(CallError::StateInvalid { status: row.status }))
        }
        Err(e) => Err(call_error(e)),
    }
}

/// `{"status": "ended"}` hangs the call up; no other status can be set.
#[utoipa::path(tag = "calls", security(("bearer" = [])), request_body = UpdateCall, responses((status = 200, body = Call), (status = 409)))]
#[patch("/calls/{id}")]
async fn update_call(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CallId>,
    body: web::Json<UpdateCall>,
) -> Result<HttpResponse, ApiError> {
    match body.status {
        Some(CallStatus::Ended | CallStatus::Terminating) => {
            command(&ctx, &auth, id.into_inner(), CallCommand::Hangup { reason: HangupReason::Normal }).await
        }
        Some(other) => Err(ApiError::new(Reason::CallStateInvalid)
            .message(format!("a call cannot be set to {other}; only `ended` hangs it up"))),
        None => Err(ApiError::invalid("status: required")),
    }
}

#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 409)))]
#[post("/calls/{id}/hangup")]
async fn hangup_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    command(&ctx, &auth, id.into_inner(), CallCommand::Hangup { reason: HangupReason::Normal }).await
}

/// Speaks text on an answered call.
#[utoipa::path(tag = "calls", security(("bearer" = [])), request_body = TalkRequest, responses((status = 200, body = Call), (status = 409)))]
#[post("/calls/{id}/talk")]
async fn talk_call(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CallId>,
    body: web::Json<TalkRequest>,
) -> Result<HttpResponse, ApiError> {
    let TalkRequest { text, language } = body.into_inner();
    if text.trim().is_empty() {
        return Err(ApiError::invalid("text: required"));
    }
    validate::text("text", &text, 4096)?;
    validate::text("language", &language, 16)?;
    command(&ctx, &auth, id.into_inner(), CallCommand::Talk { text, language }).await
}

#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 409)))]
#[post("/calls/{id}/hold")]
async fn hold_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    command(&ctx, &auth, id.into_inner(), CallCommand::Hold { on: true }).await
}

#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 409)))]
#[delete("/calls/{id}/hold")]
async fn unhold_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    command(&ctx, &auth, id.into_inner(), CallCommand::Hold { on: false }).await
}

/// Mutes one or both directions (`in`, `out`, `both`; default `both`).
#[utoipa::path(tag = "calls", security(("bearer" = [])), request_body = MuteRequest, responses((status = 200, body = Call), (status = 409)))]
#[post("/calls/{id}/mute")]
async fn mute_call(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CallId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let direction = super::optional_json::<MuteRequest>(&body)?.map_or(MuteDirection::Both, |b| b.direction);
    command(&ctx, &auth, id.into_inner(), CallCommand::Mute { direction, on: true }).await
}

#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 409)))]
#[delete("/calls/{id}/mute")]
async fn unmute_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    command(&ctx, &auth, id.into_inner(), CallCommand::Mute { direction: MuteDirection::Both, on: false }).await
}

/// Deletes an ended call: it leaves lists and reads.
#[utoipa::path(tag = "calls", security(("bearer" = [])), responses((status = 200, body = Call), (status = 409)))]
#[delete("/calls/{id}")]
async fn delete_call(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<CallId>) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::CallManage)?.clone();
    let id = id.into_inner();
    let call_id = id.clone();
    let deleted = ctx
        .db
        .write(move |tx| {
            let row = call::get(tx.conn, &customer_id, &call_id)?;
            if row.status != CallStatus::Ended {
                return Ok(Err(row.status));
            }
            call::soft_delete(tx.conn, &call_id)?;
            Ok(Ok(row.view()))
        })
        .await
        .or_not_found(Reason::CallNotFound)?
        .map_err(|status| call_error(CallError::StateInvalid { status }))?;
    ctx.domain.cache.invalidate(&[callplane_actors::cache::key("call", id.as_str())]).await;
    Ok(HttpResponse::Ok().json(deleted))
}
