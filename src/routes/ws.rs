//! `GET /v1.0/ws`: live events over WebSocket (SPEC §7). The caller is authenticated
//! (and rate limited) by the [`Auth`] extractor before anything is upgraded, so a bad or
//! missing credential is a 401 in the error envelope and no socket; the upgraded
//! connection then belongs to a session actor of the domain, which has the credential
//! checked again now and then (see `revalidate`).

use std::rc::Rc;

use actix_web::{HttpRequest, HttpResponse, get, web};
use callplane_actors::ws::{Revalidate, Viewer};
use callplane_schema::models::agent::Role;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Auth, Permission, Principal};
use crate::context::AppContext;
use crate::error::{ApiError, Reason, Status};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(connect_ws);
}

/// The permission that lets a role read each kind of resource whose events are pushed.
const READ: &[(&str, Permission)] = &[
    ("call", Permission::CallRead),
    ("agent", Permission::AgentRead),
    ("conference", Permission::ConferenceRead),
    ("activeflow", Permission::FlowRead),
    ("flow", Permission::FlowRead),
    ("number", Permission::NumberRead),
    ("sms", Permission::MessageRead),
    ("message", Permission::MessageRead),
    ("webhook", Permission::WebhookManage),
    ("billing", Permission::BillingRead),
    ("accesskey", Permission::AccesskeyManage),
];

fn viewer(auth: &Auth) -> Result<Viewer, ApiError> {
    let role = auth.role();
    let (customer_id, agent_id) = match auth.principal() {
        Principal::Agent { customer_id, agent_id, .. } => (customer_id.clone(), Some(agent_id.clone())),
        Principal::AccessKey { customer_id, .. } => (customer_id.clone(), None),
        Principal::SuperAdmin { .. } => {
            return Err(ApiError::new(Reason::PermissionDenied)
                .message("super-admins belong to no customer and have no events to follow"));
        }
    };
    let hidden = READ.iter().filter(|(_, p)| !p.granted_to(role)).map(|(r, _)| (*r).to_owned()).collect();
    Ok(Viewer { customer_id, agent_id, whole_customer: role != Role::Agent, hidden })
}

/// Upgrades to a WebSocket that pushes the events of the topics the client subscribes
/// to. Client frames: `{"type": "subscribe"|"unsubscribe", "topics": ["customer_id:<id>:call:*"]}`,
/// answered `{"type": "ack", "topics": [...]}` or `{"type": "error", "reason", "message", "topics"}`.
/// Pushed frames: the event (`id`, `event_type`, `timestamp`, `customer_id`, `data`)
/// plus the `topic` that matched.
#[utoipa::path(
    tag = "events",
    security(("bearer" = [])),
    params(
        ("token" = Option<String>, Query, description = "A JWT, for clients that cannot set headers"),
        ("accesskey" = Option<String>, Query, description = "An access key"),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request"),
        (status = 401, description = "Missing or invalid credentials; nothing is upgraded"),
        (status = 403, description = "A super-admin, which has no customer events"),
    )
)]
#[get("/ws")]
async fn connect_ws(
    auth: Auth,
    req: HttpRequest,
    body: web::Payload,
    ctx: web::Data<AppContext>,
) -> Result<HttpResponse, ApiError> {
    let viewer = viewer(&auth)?;
    let revalidate = revalidate(&ctx, &req, &auth)?;
    let (response, sink, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::invalid(format!("this route upgrades to a WebSocket: {e}")))?;
    ctx.domain.ws.serve(viewer, revalidate, sink, stream);
    Ok(response)
}

/// Authenticates the session's credential again, as the request did: no longer good
/// when it is refused or now stands for another role (a fault that keeps the answer
/// unknown leaves the session be).
fn revalidate(ctx: &AppContext, req: &HttpRequest, auth: &Auth) -> Result<Revalidate, ApiError> {
    let credential = crate::auth::credential(req).ok_or_else(|| ApiError::new(Reason::Unauthenticated))?;
    let authenticator = ctx.auth.clone();
    let role = auth.role();
    Ok(Rc::new(move || {
        let authenticator = authenticator.clone();
        let credential = credential.clone();
        Box::pin(async move {
            match authenticator.authenticate(&credential).await {
                Ok(principal) => Auth(principal).role() == role,
                Err(e) if e.reason.status() == Status::Unauthenticated => false,
                Err(e) => {
                    log::warn!("re-checking a WebSocket credential: {e}");
                    true
                }
            }
        })
    }))
}
