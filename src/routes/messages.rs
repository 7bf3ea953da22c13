//! `/v1.0/messages`: SMS on the simulated carrier, billed per destination when accepted.

use actix_web::{HttpResponse, get, post, web};
use callplane_actors::message::{MessageError, SendMessage};
use callplane_schema::ids::MessageId;
use callplane_schema::models::address::{Address, AddressType};
use callplane_schema::models::message::{self, Message};
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created};
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(send_message).service(list_messages).service(get_message);
}

/// Destinations per message at most.
const MAX_DESTINATIONS: usize = 32;
/// Characters per message at most (ten concatenated segments).
const MAX_TEXT: usize = 1600;

#[derive(Deserialize, utoipa::ToSchema)]
struct SendBody {
    source: Address,
    destinations: Vec<Address>,
    text: String,
}

fn check_tel(field: &str, address: &Address) -> Result<(), ApiError> {
    if address.kind != AddressType::Tel {
        return Err(ApiError::invalid(format!("{field}.type: messages go between `tel` addresses")));
    }
    validate::address(field, address)
}

/// Sends a message to each destination. The charge (`rates.sms` per destination) is
/// taken when it is accepted; 402 when the balance cannot cover it, and nothing is sent.
#[utoipa::path(
    tag = "messages", security(("bearer" = [])), request_body = SendBody,
    responses((status = 201, body = Message), (status = 402, description = "INSUFFICIENT_BALANCE"))
)]
#[post("/messages")]
async fn send_message(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::MessageSend)?.clone();
    let SendBody { source, destinations, text } = body.into_inner();
    check_tel("source", &source)?;
    if destinations.is_empty() || destinations.len() > MAX_DESTINATIONS {
        return Err(ApiError::invalid(format!("destinations: 1 to {MAX_DESTINATIONS}")));
    }
    for (i, destination) in destinations.iter().enumerate() {
        check_tel(&format!("destinations[{i}]"), destination)?;
    }
    if text.is_empty() {
        return Err(ApiError::invalid("text: required"));
    }
    validate::text("text", &text, MAX_TEXT)?;
    let send = SendMessage { customer_id, source, destinations, text };
    let sent = ctx.domain.messages.send(send).await.map_err(ApiError::internal)?;
    let message = sent.map_err(|e| match e {
        MessageError::InsufficientBalance { balance, needed } => ApiError::new(Reason::InsufficientBalance)
            .message(format!("the balance ({balance} micros) does not cover the message ({needed} micros)")),
        MessageError::Db(e) => e.into(),
    })?;
    log::info!("message {} accepted for {} destinations", message.id, message.targets.len());
    Ok(created(format!("/v1.0/messages/{}", message.id), &message))
}

/// The customer's messages, newest first.
#[utoipa::path(tag = "messages", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Message>))))]
#[get("/messages")]
async fn list_messages(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::MessageRead)?.clone();
    let page = query.page()?;
    let rows = ctx.db.read(move |conn| message::list(conn, &customer_id, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

/// A message with the status of each destination.
#[utoipa::path(tag = "messages", security(("bearer" = [])), responses((status = 200, body = Message), (status = 404)))]
#[get("/messages/{id}")]
async fn get_message(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<MessageId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::MessageRead)?.clone();
    let id = id.into_inner();
    let row =
        ctx.db.read(move |conn| message::get(conn, &customer_id, &id)).await.or_not_found(Reason::MessageNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}
