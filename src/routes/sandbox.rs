//! `/v1.0/sandbox`: what the simulated network lets a customer's admin do that a real
//! network would do on its own, such as calling one of the customer's numbers.

use actix_web::{HttpResponse, post, web};
use callplane_actors::call::CreateIncoming;
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::call::Call;
use callplane_schema::models::number;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::created;
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_incoming_call);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct IncomingCall {
    /// Who calls.
    source: Address,
    /// One of the customer's numbers (`tel`).
    destination: Address,
}

/// A call from the simulated network to one of the customer's numbers: created
/// `incoming` for the customer, it runs the number's call flow (whose `answer` answers
/// it). A number the customer does not have is 404 and nothing is created or billed.
#[utoipa::path(
    tag = "sandbox", security(("bearer" = [])), request_body = IncomingCall,
    responses((status = 201, body = Call), (status = 404, description = "NUMBER_NOT_FOUND"), (status = 409, description = "SANDBOX_UNAVAILABLE"))
)]
#[post("/sandbox/incoming_calls")]
async fn create_incoming_call(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<IncomingCall>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::SandboxManage)?.clone();
    if !ctx.domain.sandbox {
        return Err(ApiError::new(Reason::SandboxUnavailable));
    }
    let IncomingCall { source, destination } = body.into_inner();
    validate::address("source", &source)?;
    validate::address("destination", &destination)?;
    if source.kind != AddressType::Tel && source.kind != AddressType::Sip {
        return Err(ApiError::invalid("source.type: a caller from the network is `tel` or `sip`"));
    }
    if destination.kind != AddressType::Tel {
        return Err(ApiError::invalid("destination.type: incoming calls go to `tel` numbers"));
    }
    let dialled = destination.target.clone();
    let owned = ctx.db.read(move |conn| number::find_by_number(conn, &dialled)).await?;
    // Another customer's number is as unknown as one nobody has.
    let Some(number) = owned.filter(|n| n.customer_id == customer_id) else {
        return Err(ApiError::new(Reason::NumberNotFound)
            .message(format!("no number {} in this customer; the call is rejected", destination.target)));
    };
    let incoming = CreateIncoming { customer_id, source, destination, flow_id: number.call_flow_id.clone() };
    let call: Call =
        ctx.domain.calls.send(incoming).await.map_err(ApiError::internal)?.map_err(super::calls::call_error)?;
    log::info!("incoming call {} to {} ({})", call.id, number.number, number.id);
    Ok(created(format!("/v1.0/calls/{}", call.id), &call))
}
