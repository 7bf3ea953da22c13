//! `POST /auth/login`: username and password for a session token.

use actix_web::{HttpResponse, post, web};
use callplane_schema::models::agent;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::password;
use crate::context::AppContext;
use crate::error::{ApiError, Reason};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(login);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LoginResponse {
    username: String,
    /// HS256 JWT; send as `Authorization: Bearer <token>`.
    token: String,
}

/// Exchanges credentials for a JWT. Wrong credentials are 401, the same answer whether
/// or not the user exists.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong credentials"))
)]
#[post("/login")]
async fn login(ctx: web::Data<AppContext>, body: web::Json<LoginRequest>) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let lookup = username.clone();
    let found = match ctx.db.read(move |conn| agent::get_by_username(conn, &lookup)).await {
        Ok(agent) => Some(agent),
        Err(callplane_schema::DbError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    // argon2 takes tens of milliseconds: off the async threads.
    let verified = web::block(move || match found {
        Some(agent) if password::verify(&password, &agent.password_hash) => Some(agent),
        Some(_) => None,
        None => {
            password::verify_nothing(&password);
            None
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let agent = verified.ok_or_else(|| ApiError::new(Reason::InvalidCredentials))?;
    if let Some(customer_id) = agent.customer_id.clone() {
        // A deleted customer's agents cannot log in.
        let active = ctx.db.read(move |conn| callplane_schema::models::customer::get(conn, &customer_id)).await;
        match active {
            Ok(_) => {}
            Err(callplane_schema::DbError::NotFound) => return Err(ApiError::new(Reason::InvalidCredentials)),
            Err(e) => return Err(e.into()),
        }
    }
    let token = ctx.auth.jwt().issue(&agent.id, agent.customer_id.as_ref(), agent.role).map_err(ApiError::internal)?;
    log::info!("agent {} logged in", agent.id);
    Ok(HttpResponse::Ok().json(LoginResponse { username: agent.username, token }))
}
