//! The one middleware every request passes: request id, access log and metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};

use crate::context::AppContext;
use crate::request_id;

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = request_id::accept_or_generate(req.headers().get(request_id::HEADER));
    let ctx = req.app_data::<web::Data<AppContext>>().cloned();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let peer = req.connection_info().realip_remote_addr().unwrap_or("-").to_owned();

    request_id::scope(id.clone(), async move {
        let mut response = next.call(req).await?;
        let elapsed = started.elapsed();
        let status = response.status();
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        if let Some(ctx) = &ctx {
            ctx.metrics.http_requests.with_label_values(&[route.as_str(), method.as_str(), status.as_str()]).inc();
            ctx.metrics
                .http_duration
                .with_label_values(&[route.as_str(), method.as_str()])
                .observe(elapsed.as_secs_f64());
            if ctx.settings.access_log {
                log::info!(
                    target: "callplane::access",
                    "{peer} \"{method} {path}\" {} {:.3}ms",
                    status.as_u16(),
                    elapsed.as_secs_f64() * 1000.0
                );
            }
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(HeaderName::from_static(request_id::HEADER), value);
        }
        Ok(response)
    })
    .await
}
