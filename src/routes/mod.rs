//! HTTP routes, composed per area. Each area module has a `config` that registers its
//! handlers, one handler per operation; the OpenAPI description is collected from the
//! same registrations, so it cannot miss a route.

mod accesskeys;
mod activeflows;
mod agents;
mod billing;
mod calls;
mod conferences;
mod customers;
mod flows;
mod health;
mod login;
mod me;
mod messages;
mod numbers;
mod sandbox;
mod webhooks;
mod ws;

use actix_web::http::Method;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use callplane_schema::page::{Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest, Start};
use serde::Deserialize;
use utoipa::openapi::OpenApi;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_actix_web::{AppExt, scope};

use crate::context::AppContext;
use crate::error::{ApiError, Reason};

/// Every route of the API.
pub fn config(cfg: &mut ServiceConfig) {
    cfg.configure(health::config).service(scope("/auth").configure(login::config)).service(
        scope("/v1.0")
            .configure(health::config_v1)
            .configure(me::config)
            .configure(customers::config)
            .configure(agents::config)
            .configure(accesskeys::config)
            .configure(calls::config)
            .configure(billing::config)
            .configure(ws::config)
            .configure(webhooks::config)
            .configure(flows::config)
            .configure(activeflows::config)
            .configure(conferences::config)
            .configure(numbers::config)
            .configure(messages::config)
            .configure(sandbox::config),
    );
}

/// The OpenAPI document and the route table derived from it, built once.
pub struct ApiDescription {
    pub openapi_json: String,
    routes: Vec<(actix_web::dev::ResourceDef, Vec<Method>)>,
}

impl ApiDescription {
    pub fn build() -> ApiDescription {
        let (_, mut openapi) = actix_web::App::new().into_utoipa_app().configure(config).split_for_parts();
        describe(&mut openapi);
        let routes = openapi
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    (Method::GET, item.get.is_some()),
                    (Method::POST, item.post.is_some()),
                    (Method::PUT, item.put.is_some()),
                    (Method::PATCH, item.patch.is_some()),
                    (Method::DELETE, item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(m, present)| present.then_some(m))
                .collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        let openapi_json = openapi.to_json().unwrap_or_else(|_| "{}".to_owned());
        ApiDescription { openapi_json, routes }
    }

    /// The methods a path accepts, if any route has that path.
    fn methods_for(&self, path: &str) -> Option<Vec<&Method>> {
        let methods: Vec<&Method> =
            self.routes.iter().filter(|(def, _)| def.is_match(path)).flat_map(|(_, m)| m.iter()).collect();
        (!methods.is_empty()).then_some(methods)
    }
}

fn describe(openapi: &mut OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    openapi.info.title = "callplane".to_owned();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    openapi.info.description = Some(
        "A self-hostable telephony control plane following the VoIPBIN v1.0 API: calls, \
         conferences, flows, webhooks, live events, prepaid billing."
            .to_owned(),
    );
    openapi.info.contact = None;
    openapi.info.license = Some(utoipa::openapi::License::new(env!("CARGO_PKG_LICENSE")));
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or access key").build(),
        ),
    );
}

/// Requests no route takes: 405 with `Allow` when the path exists under another method,
/// else 404 ROUTE_NOT_FOUND.
pub async fn fallback(req: HttpRequest, ctx: web::Data<AppContext>) -> Result<HttpResponse, ApiError> {
    Err(match ctx.api.methods_for(req.path()) {
        Some(methods) => {
            let allow = methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
            ApiError::new(Reason::MethodNotAllowed)
                .message(format!("{} is not allowed on {}; use {allow}", req.method(), req.path()))
                .allow(allow)
        }
        None => ApiError::new(Reason::RouteNotFound).message(format!("no route for {}", req.path())),
    })
}

/// Both pagination styles of SPEC §2: `page_size`/`page_token` and `limit`/`offset`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows per page, 1 to 100 (default 100; larger values are capped).
    pub page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
    /// Alternative to `page_size`.
    pub limit: Option<i64>,
    /// Rows to skip (with `limit`).
    pub offset: Option<i64>,
}

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let size = match self.page_size.or(self.limit) {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if n < 1 => return Err(ApiError::invalid("page_size must be at least 1")),
            Some(n) => n.min(MAX_PAGE_SIZE),
        };
        let start = match (&self.page_token, self.offset) {
            (Some(_), Some(_)) => return Err(ApiError::invalid("use page_token or offset, not both")),
            (Some(token), None) if token.is_empty() => Start::First,
            (Some(token), None) => {
                Start::After(Cursor::decode(token).ok_or_else(|| ApiError::invalid("page_token is not valid"))?)
            }
            (None, Some(n)) if n < 0 => return Err(ApiError::invalid("offset must not be negative")),
            (None, Some(n)) => Start::Offset(n),
            (None, None) => Start::First,
        };
        Ok(PageRequest { size, start })
    }
}

/// A JSON body that may be absent (an empty body is `None`); invalid JSON is a 400.
pub fn optional_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        if e.is_data() {
            ApiError::invalid(e.to_string())
        } else {
            ApiError::new(Reason::InvalidJson).message(format!("invalid JSON: {e}"))
        }
    })
}

/// For optional fields that may also be cleared: absent is `None`, `null` is
/// `Some(None)`. Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `201 Created` with a `Location` header.
pub fn created(location: String, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Created().insert_header((header::LOCATION, location)).json(body)
}

/// Extractor settings whose failures answer in the error envelope.
pub fn extractor_configs(body_limit: usize) -> (web::JsonConfig, web::QueryConfig, web::PathConfig) {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    let json = web::JsonConfig::default().limit(body_limit).error_handler(|err, _req| {
        let error = match &err {
            JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
                ApiError::new(Reason::PayloadTooLarge).message(format!("the request body is over {limit} bytes"))
            }
            JsonPayloadError::ContentType => ApiError::new(Reason::UnsupportedContentType),
            JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::invalid(e.to_string()),
            JsonPayloadError::Deserialize(e) => {
                ApiError::new(Reason::InvalidJson).message(format!("invalid JSON: {e}"))
            }
            other => ApiError::invalid(other.to_string()),
        };
        error.into()
    });
    let query = web::QueryConfig::default().error_handler(|err, _req| {
        let QueryPayloadError::Deserialize(e) = &err else { return ApiError::invalid(err.to_string()).into() };
        ApiError::invalid(format!("query string: {e}")).into()
    });
    let path = web::PathConfig::default().error_handler(|err, _req| {
        let PathError::Deserialize(e) = &err else { return ApiError::invalid(err.to_string()).into() };
        ApiError::invalid(format!("path: {e}")).into()
    });
    (json, query, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests() {
        let q = |page_size, page_token: Option<&str>, limit, offset| ListQuery {
            page_size,
            page_token: page_token.map(str::to_owned),
            limit,
            offset,
        };
        assert_eq!(q(None, None, None, None).page().expect("ok").size, 100);
        assert_eq!(q(Some(500), None, None, None).page().expect("ok").size, 100);
        assert_eq!(q(None, None, Some(10), Some(20)).page().expect("ok").start, Start::Offset(20));
        assert!(q(Some(0), None, None, None).page().is_err());
        assert!(q(None, Some("junk"), None, None).page().is_err());
    }

    #[test]
    fn the_route_table_knows_methods() {
        let api = ApiDescription::build();
        let methods = api.methods_for("/v1.0/agents/0190c5e2-5a3b-7c4d-8e9f-0a1b2c3d4e5f").expect("known path");
        assert!(methods.contains(&&Method::GET) && methods.contains(&&Method::DELETE));
        assert!(api.methods_for("/v1.0/nothing").is_none());
    }
}
