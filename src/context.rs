//! The application context: everything a handler needs, built once at start-up and
//! cloned into each worker. Tests build their own through the same constructor.

use std::sync::Arc;

use callplane_actors::Domain;
use callplane_schema::Db;

use crate::auth::Authenticator;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::routes::ApiDescription;

#[derive(Clone)]
pub struct AppContext {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub auth: Arc<Authenticator>,
    pub metrics: Metrics,
    pub api: Arc<ApiDescription>,
    pub domain: Domain,
}
