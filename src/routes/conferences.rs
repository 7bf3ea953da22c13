//! `/v1.0/conferences` and `/v1.0/conferencecalls` (participants). Reads come from the
//! database; every change goes to the conference's actor.

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_actors::conference::{
    ConferenceChanges, ConferenceError, CreateConference, EndConference, JoinConference, JoinTarget, RemoveParticipant,
    UpdateConference,
};
use callplane_schema::ids::{CallId, ConferenceId, ConferencecallId, CustomerId, FlowId};
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::{self, CallStatus};
use callplane_schema::models::conference::{
    self, Conference, ConferenceStatus, ConferenceType, Conferencecall, ConferencecallStatus, NewConference,
};
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
    cfg.service(create_conference)
        .service(list_conferences)
        .service(get_conference)
        .service(update_conference)
        .service(delete_conference)
        .service(join_conference)
        .service(list_conferencecalls)
        .service(get_conferencecall)
        .service(delete_conferencecall);
}

/// A conference's timeout at most: a week.
const MAX_TIMEOUT: i64 = 7 * 24 * 3600;

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateConferenceBody {
    /// `conference` (the default) or `connect`.
    #[serde(rename = "type", default = "default_type")]
    kind: ConferenceType,
    #[serde(default)]
    name: String,
    #[serde(default)]
    detail: String,
    /// Seconds from creation until it ends by itself; 0 (the default) for never.
    #[serde(default)]
    timeout: i64,
    pre_flow_id: Option<FlowId>,
    post_flow_id: Option<FlowId>,
}

fn default_type() -> ConferenceType {
    ConferenceType::Conference
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateConferenceBody {
    name: Option<String>,
    detail: Option<String>,
    timeout: Option<i64>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pre_flow_id: Option<Option<FlowId>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    post_flow_id: Option<Option<FlowId>>,
}

/// `{"call_id"}` for a live call of the customer, or `{"source", "destination"}` to dial
/// out first.
#[derive(Deserialize, utoipa::ToSchema)]
struct JoinBody {
    call_id: Option<CallId>,
    source: Option<Address>,
    destination: Option<Address>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConferencecallListFilter {
    conference_id: Option<ConferenceId>,
}

fn check_fields(name: Option<&str>, detail: Option<&str>, timeout: Option<i64>) -> Result<(), ApiError> {
    if let Some(name) = name {
        validate::text("name", name, 255)?;
    }
    if let Some(detail) = detail {
        validate::text("detail", detail, 4096)?;
    }
    if let Some(timeout) = timeout
        && !(0..=MAX_TIMEOUT).contains(&timeout)
    {
        return Err(ApiError::invalid(format!("timeout: 0 to {MAX_TIMEOUT} seconds")));
    }
    Ok(())
}

fn conference_error(e: ConferenceError) -> ApiError {
    match e {
        ConferenceError::NotFound => ApiError::new(Reason::ConferenceNotFound),
        ConferenceError::ParticipantNotFound => ApiError::new(Reason::ConferencecallNotFound),
        ConferenceError::NotLive => ApiError::new(Reason::ConferenceStateInvalid).message("the conference has ended"),
        e @ ConferenceError::Full => ApiError::new(Reason::ConferenceStateInvalid).message(e.to_string()),
        e @ (ConferenceError::CallNotLive | ConferenceError::CallInConference(_)) => {
            ApiError::new(Reason::CallStateInvalid).message(e.to_string())
        }
        ConferenceError::Call(e) => super::calls::call_error(e),
        ConferenceError::Db(e) => e.into(),
    }
}

async fn read_conference(
    ctx: &AppContext,
    customer_id: &CustomerId,
    id: &ConferenceId,
) -> Result<Conference, ApiError> {
    let (customer_id, id) = (customer_id.clone(), id.clone());
    ctx.db
        .read(move |conn| {
            let row = conference::get(conn, &customer_id, &id)?;
            conference::view(conn, &row)
        })
        .await
        .or_not_found(Reason::ConferenceNotFound)
}

/// Creates a conference (`starting` until someone joins).
#[utoipa::path(
    tag = "conferences", security(("bearer" = [])), request_body = CreateConferenceBody,
    responses((status = 201, body = Conference), (status = 400))
)]
#[post("/conferences")]
async fn create_conference(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateConferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceManage)?.clone();
    let body = body.into_inner();
    check_fields(Some(&body.name), Some(&body.detail), Some(body.timeout))?;
    check_owned_flow(&ctx, &customer_id, "pre_flow_id", body.pre_flow_id.as_ref()).await?;
    check_owned_flow(&ctx, &customer_id, "post_flow_id", body.post_flow_id.as_ref()).await?;
    let new = NewConference {
        customer_id,
        kind: body.kind,
        name: body.name,
        detail: body.detail,
        timeout: body.timeout,
        pre_flow_id: body.pre_flow_id,
        post_flow_id: body.post_flow_id,
    };
    let view = ctx
        .domain
        .conferences
        .send(CreateConference { new })
        .await
        .map_err(ApiError::internal)?
        .map_err(conference_error)?;
    log::info!("conference {} created", view.id);
    Ok(created(format!("/v1.0/conferences/{}", view.id), &view))
}

/// The customer's conferences, newest first, each with its current participants.
#[utoipa::path(tag = "conferences", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Conference>))))]
#[get("/conferences")]
async fn list_conferences(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceRead)?.clone();
    let page = query.page()?;
    let listed = ctx
        .db
        .read(move |conn| {
            let rows = conference::list(conn, &customer_id, &page)?;
            let views = rows.result.iter().map(|row| conference::view(conn, row)).collect::<Result<Vec<_>, _>>()?;
            Ok(Page { result: views, next_page_token: rows.next_page_token })
        })
        .await?;
    Ok(HttpResponse::Ok().json(listed))
}

/// A conference with its participants (joining or joined): their call, status, hold and
/// mute (the call's) and join time.
#[utoipa::path(tag = "conferences", security(("bearer" = [])), responses((status = 200, body = Conference), (status = 404)))]
#[get("/conferences/{id}")]
async fn get_conference(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferenceId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceRead)?.clone();
    Ok(HttpResponse::Ok().json(read_conference(&ctx, &customer_id, &id).await?))
}

/// Changes name, detail, timeout (from creation) or flows of a live conference.
#[utoipa::path(
    tag = "conferences", security(("bearer" = [])), request_body = UpdateConferenceBody,
    responses((status = 200, body = Conference), (status = 404), (status = 409))
)]
#[put("/conferences/{id}")]
async fn update_conference(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferenceId>,
    body: web::Json<UpdateConferenceBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceManage)?.clone();
    let id = id.into_inner();
    let body = body.into_inner();
    check_fields(body.name.as_deref(), body.detail.as_deref(), body.timeout)?;
    check_owned_flow(&ctx, &customer_id, "pre_flow_id", body.pre_flow_id.as_ref().and_then(Option::as_ref)).await?;
    check_owned_flow(&ctx, &customer_id, "post_flow_id", body.post_flow_id.as_ref().and_then(Option::as_ref)).await?;
    let changes = ConferenceChanges {
        name: body.name,
        detail: body.detail,
        timeout: body.timeout,
        pre_flow_id: body.pre_flow_id,
        post_flow_id: body.post_flow_id,
    };
    let update = UpdateConference { customer_id: customer_id.clone(), conference_id: id.clone(), changes };
    match ctx.domain.conferences.send(update).await.map_err(ApiError::internal)? {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        Err(ConferenceError::NotLive) => {
            // Not found, or ended: the database tells which.
            read_conference(&ctx, &customer_id, &id).await?;
            Err(conference_error(ConferenceError::NotLive))
        }
        Err(e) => Err(conference_error(e)),
    }
}

/// Ends a live conference (its participants leave; answered `terminating`); deleting an
/// ended one hides it from lists and reads.
#[utoipa::path(tag = "conferences", security(("bearer" = [])), responses((status = 200, body = Conference), (status = 404)))]
#[delete("/conferences/{id}")]
async fn delete_conference(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferenceId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceManage)?.clone();
    let id = id.into_inner();
    let end = EndConference { customer_id: customer_id.clone(), conference_id: id.clone() };
    match ctx.domain.conferences.send(end).await.map_err(ApiError::internal)? {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        Err(ConferenceError::NotLive) => {
            let hidden = ctx
                .db
                .write(move |tx| {
                    let row = conference::get(tx.conn, &customer_id, &id)?;
                    if row.status != ConferenceStatus::Terminated {
                        return Ok(Err(conference_error(ConferenceError::NotLive)));
                    }
                    let view = conference::view(tx.conn, &row)?;
                    conference::soft_delete(tx.conn, &id)?;
                    Ok(Ok(view))
                })
                .await
                .or_not_found(Reason::ConferenceNotFound)??;
            Ok(HttpResponse::Ok().json(hidden))
        }
        Err(e) => Err(conference_error(e)),
    }
}

/// Joins a call: a live call of the customer (`call_id`), or a new one dialled from
/// `source` to `destination`. The call hears the conference's pre-flow, then joins;
/// when it leaves it hears the post-flow. Answered at once with the `joining`
/// participant; `conference.joined` follows when it is in.
#[utoipa::path(
    tag = "conferences", security(("bearer" = [])), request_body = JoinBody,
    responses((status = 201, body = Conferencecall), (status = 404), (status = 409), (status = 402))
)]
#[post("/conferences/{id}/join")]
async fn join_conference(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferenceId>,
    body: web::Json<JoinBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceManage)?.clone();
    let id = id.into_inner();
    let target = match body.into_inner() {
        JoinBody { call_id: Some(call_id), source: None, destination: None } => {
            let (customer, call) = (customer_id.clone(), call_id.clone());
            let row =
                ctx.db.read(move |conn| call::get(conn, &customer, &call)).await.or_not_found(Reason::CallNotFound)?;
            if matches!(row.status, CallStatus::Terminating | CallStatus::Ended) {
                return Err(ApiError::new(Reason::CallStateInvalid)
                    .message(format!("the call is {}: only a live call joins", row.status)));
            }
            JoinTarget::Call(call_id)
        }
        JoinBody { call_id: None, source: Some(source), destination: Some(destination) } => {
            validate::address("source", &source)?;
            validate::address("destination", &destination)?;
            if destination.kind == AddressType::Conference {
                return Err(ApiError::invalid("destination.type: a call to dial, not a conference"));
            }
            if destination.kind == AddressType::Agent || source.kind == AddressType::Agent {
                super::calls::check_owned_agents(&ctx, &customer_id, [&source, &destination].into_iter()).await?;
            }
            JoinTarget::Dial { source, destination }
        }
        _ => return Err(ApiError::invalid("either call_id, or source and destination")),
    };
    let join = JoinConference { customer_id: customer_id.clone(), conference_id: id.clone(), target };
    match ctx.domain.conferences.send(join).await.map_err(ApiError::internal)? {
        Ok(participant) => {
            log::info!("call {} joining conference {id} as {}", participant.call_id, participant.id);
            Ok(created(format!("/v1.0/conferencecalls/{}", participant.id), &participant))
        }
        Err(ConferenceError::NotLive) => {
            read_conference(&ctx, &customer_id, &id).await?;
            Err(conference_error(ConferenceError::NotLive))
        }
        Err(e) => Err(conference_error(e)),
    }
}

/// Participants (those who left too), newest first; `conference_id` narrows to one conference.
#[utoipa::path(
    tag = "conferences", security(("bearer" = [])), params(ListQuery, ConferencecallListFilter),
    responses((status = 200, body = inline(Page<Conferencecall>)))
)]
#[get("/conferencecalls")]
async fn list_conferencecalls(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
    filter: web::Query<ConferencecallListFilter>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceRead)?.clone();
    let page = query.page()?;
    let conference_id = filter.into_inner().conference_id;
    let rows = ctx
        .db
        .read(move |conn| conference::list_participants(conn, &customer_id, conference_id.as_ref(), &page))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

async fn read_participant(
    ctx: &AppContext,
    customer_id: &CustomerId,
    id: &ConferencecallId,
) -> Result<Conferencecall, ApiError> {
    let (customer_id, id) = (customer_id.clone(), id.clone());
    ctx.db
        .read(move |conn| {
            let row = conference::get_participant(conn, &customer_id, &id)?;
            conference::participant_view(conn, &row)
        })
        .await
        .or_not_found(Reason::ConferencecallNotFound)
}

#[utoipa::path(tag = "conferences", security(("bearer" = [])), responses((status = 200, body = Conferencecall), (status = 404)))]
#[get("/conferencecalls/{id}")]
async fn get_conferencecall(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferencecallId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceRead)?.clone();
    Ok(HttpResponse::Ok().json(read_participant(&ctx, &customer_id, &id).await?))
}

/// Removes a participant: its call leaves (and hears the post-flow) but stays up. One
/// that left already is answered as it is.
#[utoipa::path(tag = "conferences", security(("bearer" = [])), responses((status = 200, body = Conferencecall), (status = 404)))]
#[delete("/conferencecalls/{id}")]
async fn delete_conferencecall(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ConferencecallId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::ConferenceManage)?.clone();
    let id = id.into_inner();
    let participant = read_participant(&ctx, &customer_id, &id).await?;
    if participant.status == ConferencecallStatus::Left {
        return Ok(HttpResponse::Ok().json(participant));
    }
    let remove = RemoveParticipant {
        customer_id: customer_id.clone(),
        conference_id: participant.conference_id.clone(),
        participant: id.clone(),
    };
    match ctx.domain.conferences.send(remove).await.map_err(ApiError::internal)? {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        // It left meanwhile, or its conference is ending and letting everyone go.
        Err(ConferenceError::ParticipantNotFound | ConferenceError::NotLive) => {
            Ok(HttpResponse::Ok().json(read_participant(&ctx, &customer_id, &id).await?))
        }
        Err(e) => Err(conference_error(e)),
    }
}
