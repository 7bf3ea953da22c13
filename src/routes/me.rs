//! `GET /v1.0/me`: the caller.

use actix_web::{HttpResponse, get};
use callplane_schema::ids::{AccessKeyId, AgentId, CustomerId};
use callplane_schema::models::agent::Role;
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::{Auth, Permission, Principal};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(get_me);
}

#[derive(Serialize, utoipa::ToSchema)]
struct Me {
    /// The agent's id; absent for an access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<AgentId>,
    customer_id: Option<CustomerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    role: Role,
    /// Present when the caller is an access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    accesskey_id: Option<AccessKeyId>,
    permissions: Vec<&'static str>,
}

/// Who the credential belongs to, with its role and permissions.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 200, body = Me)))]
#[get("/me")]
async fn get_me(auth: Auth) -> HttpResponse {
    let role = auth.role();
    let permissions = Permission::ALL.iter().filter(|p| p.granted_to(role)).map(|p| p.as_str()).collect();
    let me = match auth.principal() {
        Principal::Agent { agent_id, customer_id, username, role } => Me {
            id: Some(agent_id.clone()),
            customer_id: Some(customer_id.clone()),
            username: Some(username.clone()),
            role: *role,
            accesskey_id: None,
            permissions,
        },
        Principal::AccessKey { key_id, customer_id } => Me {
            id: None,
            customer_id: Some(customer_id.clone()),
            username: None,
            role: Role::Admin,
            accesskey_id: Some(key_id.clone()),
            permissions,
        },
        Principal::SuperAdmin { agent_id, username } => Me {
            id: Some(agent_id.clone()),
            customer_id: None,
            username: Some(username.clone()),
            role: Role::SuperAdmin,
            accesskey_id: None,
            permissions: vec!["customer.manage", "billing.manage"],
        },
    };
    HttpResponse::Ok().json(me)
}
