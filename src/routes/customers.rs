//! `/v1.0/customers` (super-admin) and `/v1.0/customer` (the caller's own).

use actix_web::{HttpResponse, delete, get, post, put, web};
use callplane_schema::ids::CustomerId;
use callplane_schema::models::customer::{self, Customer, CustomerChanges};
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{ListQuery, created};
use crate::auth::{Auth, Permission, password};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};
use crate::provision::{self, NewCustomer};
use crate::validate;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_customer)
        .service(list_customers)
        .service(get_customer)
        .service(update_customer)
        .service(delete_customer)
        .service(get_own_customer)
        .service(update_own_customer);
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateCustomer {
    name: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    address: String,
    /// Opening balance in micro-units.
    #[serde(default)]
    balance: i64,
    /// With `password`: the customer's first admin agent.
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateCustomer {
    name: Option<String>,
    detail: Option<String>,
    email: Option<String>,
    phone_number: Option<String>,
    address: Option<String>,
}

impl UpdateCustomer {
    fn into_changes(self) -> Result<CustomerChanges, ApiError> {
        for (field, value, max) in [
            ("name", &self.name, 255),
            ("detail", &self.detail, 4096),
            ("email", &self.email, 255),
            ("phone_number", &self.phone_number, 32),
            ("address", &self.address, 1024),
        ] {
            if let Some(value) = value {
                validate::text(field, value, max)?;
            }
        }
        if self.name.as_deref().is_some_and(str::is_empty) {
            return Err(ApiError::invalid("name: must not be empty"));
        }
        Ok(CustomerChanges {
            name: self.name,
            detail: self.detail,
            email: self.email,
            phone_number: self.phone_number,
            address: self.address,
        })
    }
}

/// Creates a customer with its billing account and, given `username` and `password`,
/// its first admin.
#[utoipa::path(tag = "customers", security(("bearer" = [])), request_body = CreateCustomer, responses((status = 201, body = Customer)))]
#[post("/customers")]
async fn create_customer(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<CreateCustomer>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let body = body.into_inner();
    if body.name.is_empty() {
        return Err(ApiError::invalid("name: required"));
    }
    if body.balance < 0 {
        return Err(ApiError::invalid("balance: must not be negative"));
    }
    let mut new = Customer::new(body.name);
    new.detail = body.detail;
    new.email = body.email;
    new.phone_number = body.phone_number;
    new.address = body.address;
    UpdateCustomer {
        name: Some(new.name.clone()),
        detail: Some(new.detail.clone()),
        email: Some(new.email.clone()),
        phone_number: Some(new.phone_number.clone()),
        address: Some(new.address.clone()),
    }
    .into_changes()?;
    let admin = match (body.username, body.password) {
        (Some(username), Some(password)) => {
            validate::username(&username)?;
            validate::password(&password)?;
            let hash = web::block(move || password::hash(&password))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            Some((username, hash))
        }
        (None, None) => None,
        _ => return Err(ApiError::invalid("username and password come together")),
    };
    let (customer, _) =
        provision::create_customer(&ctx.db, NewCustomer { customer: new, balance: body.balance, admin })
            .await
            .map_err(|e| match e {
                callplane_schema::DbError::Conflict(_) => ApiError::new(Reason::UsernameTaken),
                e => e.into(),
            })?;
    Ok(created(format!("/v1.0/customers/{}", customer.id), &customer))
}

#[utoipa::path(tag = "customers", security(("bearer" = [])), params(ListQuery), responses((status = 200, body = inline(Page<Customer>))))]
#[get("/customers")]
async fn list_customers(
    ctx: web::Data<AppContext>,
    auth: Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let page = query.page()?;
    let customers = ctx.db.read(move |conn| customer::list(conn, &page)).await?;
    Ok(HttpResponse::Ok().json(customers))
}

#[utoipa::path(tag = "customers", security(("bearer" = [])), responses((status = 200, body = Customer), (status = 404)))]
#[get("/customers/{id}")]
async fn get_customer(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CustomerId>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let id = id.into_inner();
    let found = ctx.db.read(move |conn| customer::get(conn, &id)).await.or_not_found(Reason::CustomerNotFound)?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(tag = "customers", security(("bearer" = [])), request_body = UpdateCustomer, responses((status = 200, body = Customer)))]
#[put("/customers/{id}")]
async fn update_customer(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CustomerId>,
    body: web::Json<UpdateCustomer>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let id = id.into_inner();
    let changes = body.into_inner().into_changes()?;
    let updated = ctx
        .db
        .write(move |tx| customer::update(tx.conn, &id, &changes))
        .await
        .or_not_found(Reason::CustomerNotFound)?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Deletes a customer: its data stays, its credentials stop working.
#[utoipa::path(tag = "customers", security(("bearer" = [])), responses((status = 200, body = Customer)))]
#[delete("/customers/{id}")]
async fn delete_customer(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<CustomerId>,
) -> Result<HttpResponse, ApiError> {
    auth.require_superadmin()?;
    let id = id.into_inner();
    let deleted =
        ctx.db.write(move |tx| customer::soft_delete(tx.conn, &id)).await.or_not_found(Reason::CustomerNotFound)?;
    ctx.auth.forget_all();
    Ok(HttpResponse::Ok().json(deleted))
}

/// The caller's own customer.
#[utoipa::path(tag = "customers", security(("bearer" = [])), responses((status = 200, body = Customer)))]
#[get("/customer")]
async fn get_own_customer(ctx: web::Data<AppContext>, auth: Auth) -> Result<HttpResponse, ApiError> {
    let id = auth.require(Permission::CustomerRead)?.clone();
    let found = ctx.db.read(move |conn| customer::get(conn, &id)).await.or_not_found(Reason::CustomerNotFound)?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(tag = "customers", security(("bearer" = [])), request_body = UpdateCustomer, responses((status = 200, body = Customer)))]
#[put("/customer")]
async fn update_own_customer(
    ctx: web::Data<AppContext>,
    auth: Auth,
    body: web::Json<UpdateCustomer>,
) -> Result<HttpResponse, ApiError> {
    let id = auth.require(Permission::CustomerManage)?.clone();
    let changes = body.into_inner().into_changes()?;
    let updated = ctx
        .db
        .write(move |tx| customer::update(tx.conn, &id, &changes))
        .await
        .or_not_found(Reason::CustomerNotFound)?;
    Ok(HttpResponse::Ok().json(updated))
}
