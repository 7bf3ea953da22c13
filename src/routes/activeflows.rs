//! `/v1.0/activeflows`: flow runs, one per flow executed on a call. Read from the
//! database; stopping goes to the run's actor.

use actix_web::{HttpResponse, get, post, web};
use callplane_actors::flow::{FlowError, StopRun};
use callplane_schema::ids::{ActiveflowId, CallId};
use callplane_schema::models::activeflow::{self, Activeflow, ActiveflowFilter, ActiveflowStatus, EndReason};
use callplane_schema::page::Page;
use serde::Deserialize;
use utoipa_actix_web::service_config::ServiceConfig;

use super::ListQuery;
use crate::auth::{Auth, Permission};
use crate::context::AppContext;
use crate::error::{ApiError, OrNotFound, Reason};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list_activeflows).service(get_activeflow).service(stop_activeflow);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ActiveflowListFilter {
    status: Option<ActiveflowStatus>,
    /// Only the runs of this call.
    call_id: Option<CallId>,
}

/// The customer's flow runs, newest first.
#[utoipa::path(
    tag = "activeflows", security(("bearer" = [])), params(ListQuery, ActiveflowListFilter),
    responses((status = 200, body = inline(Page<Activeflow>)))
)]
#[get("/activeflows")]
async fn list_activeflows(
    ctx: web::Data<AppContext>,
    auth: Auth,
    page: web::Query<ListQuery>,
    filter: web::Query<ActiveflowListFilter>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowRead)?.clone();
    let page = page.page()?;
    let filter = filter.into_inner();
    let filter = ActiveflowFilter { status: filter.status, reference_id: filter.call_id };
    let rows = ctx.db.read(move |conn| activeflow::list(conn, &customer_id, &filter, &page)).await?;
    Ok(HttpResponse::Ok().json(rows.map(|r| r.view())))
}

#[utoipa::path(tag = "activeflows", security(("bearer" = [])), responses((status = 200, body = Activeflow), (status = 404)))]
#[get("/activeflows/{id}")]
async fn get_activeflow(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ActiveflowId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowRead)?.clone();
    let id = id.into_inner();
    let row = ctx
        .db
        .read(move |conn| activeflow::get(conn, &customer_id, &id))
        .await
        .or_not_found(Reason::ActiveflowNotFound)?;
    Ok(HttpResponse::Ok().json(row.view()))
}

/// Stops a run; its call stays as it is. A run that has ended already is answered as it is.
#[utoipa::path(tag = "activeflows", security(("bearer" = [])), responses((status = 200, body = Activeflow), (status = 404)))]
#[post("/activeflows/{id}/stop")]
async fn stop_activeflow(
    ctx: web::Data<AppContext>,
    auth: Auth,
    id: web::Path<ActiveflowId>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = auth.require(Permission::FlowManage)?.clone();
    let id = id.into_inner();
    let stop =
        StopRun { activeflow_id: id.clone(), customer_id: Some(customer_id.clone()), reason: EndReason::Stopped };
    match ctx.domain.flows.send(stop).await.map_err(ApiError::internal)? {
        Ok(view) => Ok(HttpResponse::Ok().json(view)),
        Err(FlowError::NotLive) => {
            let row = ctx
                .db
                .read(move |conn| activeflow::get(conn, &customer_id, &id))
                .await
                .or_not_found(Reason::ActiveflowNotFound)?;
            Ok(HttpResponse::Ok().json(row.view()))
        }
        Err(FlowError::NotFound) => Err(ApiError::new(Reason::ActiveflowNotFound)),
        Err(FlowError::Db(e)) => Err(e.into()),
    }
}
