//! `/v1.0/agents`: a customer's logins.

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_schema::ids::AgentId;
use callplane_schema::models::address::Address;
use callplane_schema::models::agent::{self, Agent, AgentChanges, AgentRow, AgentStatus, Role};
use callplane_schema::models::agent_stats::{self, AgentStats};
use callplane_schema::models::event::NewEvent;
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created};
use crate::auth::{Auth, Permission, password};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_agent)
        .service(list_agents)
        .service(get_agent)
        .service(update_agent)
        .service(delete_agent)
        .service(update_agent_status)
        .service(get_agent_stats);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateAgent {
    username: String,
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    detail: String,
    /// `admin`, `manager` or `agent` (the default).
    #[serde(default = "default_role")]
    role: Role,
    #[serde(default)]
    addresses: Vec<Address>,
}

fn default_role() -> Role {
    Role::Agent
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateAgent {
    name: Option<String>,
    detail: Option<String>,
    role: Option<Role>,
    password: Option<String>,
    addresses: Option<Vec<Address>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateStatus {
    status: AgentStatus,
}

fn check_role(role: Role) -> Result<(), ApiError> {
    if role == Role::SuperAdmin {
        return Err(ApiError::invalid(
            "role: `admin`, `manager` or `agent`; super-admins are made on the command line",
        ));
    }
    Ok(())
}

fn check_addresses(addresses: &[Address]) -> Result<(), ApiError> {
    if addresses.len() > 16 {
        return Err(ApiError::invalid("addresses: at most 16"));
    }
    addresses.iter().enumerate().try_for_each(|(i, a)| validate::address(&format!("addresses[{i}]"), a))
}

/// Creates an agent. Giving it a role other than `agent` needs `agent.role`.
#[utoipa::path(
    tag = "agents", security(("bearer" = [])), request_body = CreateAgent,
    responses((status = 201, body = Agent), (status = 409, description = "USERNAME_TAKEN"))
)]
#[post("/agents")]
async fn create_agent(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateAgent>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AgentManage)?.clone();
    let body = body.into_inner();
    validate::username(&body.username)?;
    validate::password(&body.password)?;
    validate::text("name", &body.name, 255)?;
    validate::text("detail", &body.detail, 4096)?;
    check_role(body.role)?;
    check_addresses(&body.addresses)?;
    if body.role != Role::Agent {
        auth.require(Permission::AgentRole)?;
    }
    let password = body.password;
    let hash =
        web::block(move || password::hash(&password)).await.map_err(ApiError::internal)?.map_err(ApiError::internal)?;
    let mut row = AgentRow::new(Some(customer_id.clone()), &body.username, hash, body.role);
    row.name = body.name;
    row.detail = body.detail;
    row.addresses = agent::encode_addresses(&body.addresses);
    let view = ctx
        .db
        .write(move |tx| {
            agent::insert(tx.conn, &row)?;
            let view = row.view();
            tx.emit(NewEvent::new("agent.created", Some(&customer_id), &view.id, &view)?)?;
            Ok(view)
        })
        .await
        .map_err(|e| match e {
            callplane_schema::DbError::Conflict(_) => ApiError::new(Reason::UsernameTaken),
            e => e.into(),
        })?;
    Ok(created(format!("/v1.0/agents/{}", view.id), &view))
}

/// The customer's agents, newest first.
#[utoipa::path(tag = "agents", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Agent>))))]
#[get("/agents")]
async fn list_agents(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::AgentRead)?.clone();
    if auth.own_only().is_some() {
        return Err(
            ApiError::new(Reason::PermissionDenied).message("agents may read only themselves: GET /v1.0/agents/{id}")
        );
    }
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| agent::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

#[utoipa::path(tag = "agents", security(("bearer" = [])), responses((status = 200, body = Agent), (status = 404)))]
#[get("/agents/{id}")]
async fn get_agent(ctx: web::Data<AppContext>, auth: Auth, id: web::Path<AgentId>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer_id = auth.require(Permission::AgentRead)?.clone();
    let row = ctx.db.read(move |conn| agent::get(conn, &customer_id, &id)).await.or_not_found(Reason::AgentNotFound)?;
    auth.require_self_or(&row.id, Permission::AgentRead)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Changes name, detail, addresses, password or role (the role needs `agent.role`).
#[utoipa::path(tag = "agents", security(("bearer" = [])), request_body = UpdateAgent, responses((status = 200, body = Agent), (status = 409, description = "LAST_ADMIN")))]
#[put("/agents/{id}")]
async fn update_agent(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AgentId>,
    body: web::Json<UpdateAgent>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer_id = auth.require(Permission::AgentManage)?.clone();
    let body = body.into_inner();
    if let Some(name) = &body.name {
        validate::text("name", name, 255)?;
    }
    if let Some(detail) = &body.detail {
        validate::text("detail", detail, 4096)?;
    }
    if let Some(addresses) = &body.addresses {
        check_addresses(addresses)?;
    }
    if let Some(role) = body.role {
        check_role(role)?;
        auth.require(Permission::AgentRole)?;
    }
    let password_hash = match body.password {
        Some(password) => {
            validate::password(&password)?;
            Some(
                web::block(move || password::hash(&password))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?,
            )
        }
        None => None,
    };
    let changes = AgentChanges {
        name: body.name,
        detail: body.detail,
        role: body.role,
        status: None,
        password_hash,
        addresses: body.addresses.as_deref().map(agent::encode_addresses),
    };
    let agent_id = id.clone();
    let updated = ctx
        .db
        .write(move |tx| {
            let current = agent::get(tx.conn, &customer_id, &agent_id)?;
            let demotes_admin = current.role == Role::Admin && changes.role.is_some_and(|r| r != Role::Admin);
            if demotes_admin && agent::count_admins(tx.conn, &customer_id)? <= 1 {
                return Ok(Err(ApiError::new(Reason::LastAdmin)));
            }
            let view = agent::update(tx.conn, &customer_id, &agent_id, &changes)?.view();
            tx.emit(NewEvent::new("agent.updated", Some(&customer_id), &view.id, &view)?)?;
            Ok(Ok(view))
        })
        .await
        .or_not_found(Reason::AgentNotFound)??;
    ctx.auth.forget_agent(&id);
    Ok(HttpResponse::Ok().json(updated))
}

/// Deletes an agent; its tokens stop working. The last admin cannot be deleted.
#[utoipa::path(tag = "agents", security(("bearer" = [])), responses((status = 200, body = Agent), (status = 409, description = "LAST_ADMIN")))]
#[delete("/agents/{id}")]
async fn delete_agent(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer_id = auth.require(Permission::AgentManage)?.clone();
    let agent_id = id.clone();
    let deleted = ctx
        .db
        .write(move |tx| {
            let current = agent::get(tx.conn, &customer_id, &agent_id)?;
            if current.role == Role::Admin && agent::count_admins(tx.conn, &customer_id)? <= 1 {
                return Ok(Err(ApiError::new(Reason::LastAdmin)));
            }
            let view = agent::delete(tx.conn, &customer_id, &agent_id)?.view();
            tx.emit(NewEvent::new("agent.deleted", Some(&customer_id), &view.id, &view)?)?;
            Ok(Ok(view))
        })
        .await
        .or_not_found(Reason::AgentNotFound)??;
    ctx.auth.forget_agent(&id);
    Ok(HttpResponse::Ok().json(deleted))
}

/// Sets an agent's status. Agents may set their own; others need `agent.status`.
#[utoipa::path(tag = "agents", security(("bearer" = [])), request_body = UpdateStatus, responses((status = 200, body = Agent)))]
#[put("/agents/{id}/status")]
async fn update_agent_status(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AgentId>,
    body: web::Json<UpdateStatus>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer_id = auth.require_self_or(&id, Permission::AgentStatus)?.clone();
    let changes = AgentChanges { status: Some(body.status), ..Default::default() };
    let updated = ctx
        .db
        .write(move |tx| {
            let view = agent::update(tx.conn, &customer_id, &id, &changes)?.view();
            tx.emit(NewEvent::new("agent.status_updated", Some(&customer_id), &view.id, &view)?)?;
            Ok(view)
        })
        .await
        .or_not_found(Reason::AgentNotFound)?;
    Ok(HttpResponse::Ok().json(updated))
}

/// An agent's calls in progress, calls handled and talk time (today, UTC, and in total).
#[utoipa::path(tag = "agents", security(("bearer" = [])), responses((status = 200, body = AgentStats), (status = 404)))]
#[get("/agents/{id}/stats")]
async fn get_agent_stats(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<AgentId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer_id = auth.require(Permission::AgentRead)?.clone();
    let agent_id = id.clone();
    let (row, stats) = ctx
        .db
        .read(move |conn| Ok((agent::get(conn, &customer_id, &agent_id)?, agent_stats::get(conn, &agent_id)?)))
        .await
        .or_not_found(Reason::AgentNotFound)?;
    auth.require_self_or(&row.id, Permission::AgentRead)?;
    let now = callplane_schema::time::now();
    let customer_id = row.customer_id.clone().unwrap_or_default();
    let stats = stats.unwrap_or_else(|| AgentStats::empty(row.id, customer_id, now)).as_of(now);
    Ok(HttpResponse::Ok().json(stats))
}
