//! Who is calling, and what they may do.
//!
//! Credentials come as `Authorization: Bearer <jwt or access key>`, `?token=<jwt>` or
//! `?accesskey=<key>`. Every handler that needs a caller takes [`Auth`] as an argument;
//! extracting it authenticates, resolves the caller's current role from the database
//! (cached briefly, and forgotten at once when this node changes it) and applies the
//! per-customer rate limit.

pub mod accesskey;
pub mod jwt;
pub mod password;

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use callplane_schema::Db;
use callplane_schema::ids::{AccessKeyId, AgentId, CustomerId};
use callplane_schema::models::agent::Role;
use callplane_schema::models::{accesskey as keys, agent, customer};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::context::AppContext;
use crate::error::{ApiError, Reason};

/// Named `<resource>.<verb>`; roles map to sets of them (see [`Permission::granted_to`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    CustomerRead,
    CustomerManage,
    AgentRead,
    AgentManage,
    /// Changing an agent's role.
    AgentRole,
    /// Changing an agent's status (an agent may always change its own).
    AgentStatus,
    AccesskeyManage,
    BillingRead,
    CallCreate,
    CallRead,
    CallManage,
    WebhookManage,
    ConferenceRead,
    ConferenceManage,
    FlowRead,
    FlowManage,
    NumberRead,
    NumberManage,
    MessageRead,
    MessageSend,
    /// Injecting simulated incoming calls.
    SandboxManage,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::CustomerRead,
        Permission::CustomerManage,
        Permission::AgentRead,
        Permission::AgentManage,
        Permission::AgentRole,
        Permission::AgentStatus,
        Permission::AccesskeyManage,
        Permission::BillingRead,
        Permission::CallCreate,
        Permission::CallRead,
        Permission::CallManage,
        Permission::WebhookManage,
        Permission::ConferenceRead,
        Permission::ConferenceManage,
        Permission::FlowRead,
        Permission::FlowManage,
        Permission::NumberRead,
        Permission::NumberManage,
        Permission::MessageRead,
        Permission::MessageSend,
        Permission::SandboxManage,
    ];

    pub fn as_str(self) -> &'static str {
        use Permission::*;
        match self {
            CustomerRead => "customer.read",
            CustomerManage => "customer.manage",
            AgentRead => "agent.read",
            AgentManage => "agent.manage",
            AgentRole => "agent.role",
            AgentStatus => "agent.status",
            AccesskeyManage => "accesskey.manage",
            BillingRead => "billing.read",
            CallCreate => "call.create",
            CallRead => "call.read",
            CallManage => "call.manage",
            WebhookManage => "webhook.manage",
            ConferenceRead => "conference.read",
            ConferenceManage => "conference.manage",
            FlowRead => "flow.read",
            FlowManage => "flow.manage",
            NumberRead => "number.read",
            NumberManage => "number.manage",
            MessageRead => "message.read",
            MessageSend => "message.send",
            SandboxManage => "sandbox.manage",
        }
    }

    /// Admins hold every permission of their customer; managers all but billing, access
    /// keys, roles and the sandbox; agents only read their own calls and themselves and
    /// set their own status ([`Auth::own_only`] narrows those to the agent itself).
    pub fn granted_to(self, role: Role) -> bool {
        use Permission::*;
        match role {
            Role::Admin => true,
            Role::Manager => !matches!(self, BillingRead | AccesskeyManage | AgentRole | SandboxManage),
            Role::Agent => matches!(self, CallRead | AgentRead | AgentStatus),
            Role::SuperAdmin => false,
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    Agent { agent_id: AgentId, customer_id: CustomerId, username: String, role: Role },
    AccessKey { key_id: AccessKeyId, customer_id: CustomerId },
    SuperAdmin { agent_id: AgentId, username: String },
}

/// The extractor every authenticated handler takes.
#[derive(Debug, Clone)]
pub struct Auth(pub Arc<Principal>);

impl Auth {
    pub fn principal(&self) -> &Principal {
        &self.0
    }

    pub fn role(&self) -> Role {
        match &*self.0 {
            Principal::Agent { role, .. } => *role,
            Principal::AccessKey { .. } => Role::Admin,
            Principal::SuperAdmin { .. } => Role::SuperAdmin,
        }
    }

    /// The caller's customer; super-admins have none.
    pub fn customer_id(&self) -> Option<&CustomerId> {
        match &*self.0 {
            Principal::Agent { customer_id, .. } | Principal::AccessKey { customer_id, .. } => Some(customer_id),
            Principal::SuperAdmin { .. } => None,
        }
    }

    pub fn agent_id(&self) -> Option<&AgentId> {
        match &*self.0 {
            Principal::Agent { agent_id, .. } | Principal::SuperAdmin { agent_id, .. } => Some(agent_id),
            Principal::AccessKey { .. } => None,
        }
    }

    /// The caller's customer, if its role holds `permission`; else 403.
    #[track_caller]
    pub fn require(&self, permission: Permission) -> Result<&CustomerId, ApiError> {
        let customer_id = self.customer_id().ok_or_else(|| {
            ApiError::new(Reason::PermissionDenied)
                .message("super-admins act on customers through /v1.0/customers and /v1.0/billing_accounts")
        })?;
        if permission.granted_to(self.role()) {
            Ok(customer_id)
        } else {
            Err(ApiError::new(Reason::PermissionDenied).message(format!("missing permission {}", permission.as_str())))
        }
    }

    #[track_caller]
    pub fn require_superadmin(&self) -> Result<(), ApiError> {
        match &*self.0 {
            Principal::SuperAdmin { .. } => Ok(()),
            _ => Err(ApiError::new(Reason::PermissionDenied).message("super-admin only")),
        }
    }

    /// For the `agent` role, the agent its reads and writes are confined to.
    pub fn own_only(&self) -> Option<&AgentId> {
        match &*self.0 {
            Principal::Agent { agent_id, role: Role::Agent, .. } => Some(agent_id),
            _ => None,
        }
    }

    /// 403 unless the caller may act on `agent_id` under a permission it holds.
    #[track_caller]
    pub fn require_self_or(&self, agent_id: &AgentId, permission: Permission) -> Result<&CustomerId, ApiError> {
        let customer_id = self.require(permission)?;
        match self.own_only() {
            Some(own) if own != agent_id => {
                Err(ApiError::new(Reason::PermissionDenied).message("agents may act only on themselves"))
            }
            _ => Ok(customer_id),
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req.app_data::<web::Data<AppContext>>().cloned();
        let credential = credential(req);
        Box::pin(async move {
            let ctx = ctx.ok_or_else(|| ApiError::internal("AppContext is not registered"))?;
            let credential = credential.ok_or_else(|| ApiError::new(Reason::Unauthenticated))?;
            let principal = ctx.auth.authenticate(&credential).await?;
            ctx.auth.limit(&principal)?;
            Ok(Auth(principal))
        })
    }
}

/// The credential of a request: header first, then the query string.
pub(crate) fn credential(req: &HttpRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    let query = req.query_string();
    if query.is_empty() {
        return None;
    }
    url_query_value(query, "token").or_else(|| url_query_value(query, "accesskey"))
}

fn url_query_value(query: &str, name: &str) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(query)
        .ok()
        .and_then(|q| q.get(name).cloned())
        .filter(|v| !v.is_empty())
}

/// Resolves credentials to principals and applies the rate limit.
pub struct Authenticator {
    jwt: jwt::Jwt,
    db: Db,
    /// Resolved principals by `a:<agent id>` / `k:<key hash>`. Short-lived, so that a
    /// change made on another node takes effect within the TTL; this node's own changes
    /// call [`Authenticator::forget_agent`] and friends.
    cache: moka::sync::Cache<String, Arc<Principal>>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Authenticator {
    pub fn new(jwt: jwt::Jwt, db: Db, per_second: u32, burst: u32) -> Authenticator {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Authenticator {
            jwt,
            db,
            cache: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(30)).build(),
            limiter,
        }
    }

    pub fn jwt(&self) -> &jwt::Jwt {
        &self.jwt
    }

    pub async fn authenticate(&self, credential: &str) -> Result<Arc<Principal>, ApiError> {
        let unauthenticated = || ApiError::new(Reason::Unauthenticated);
        if credential.starts_with(accesskey::PREFIX) {
            let hash = accesskey::hash(credential);
            let cache_key = format!("k:{hash}");
            if let Some(principal) = self.cache.get(&cache_key) {
                return Ok(principal);
            }
            let found = self
                .db
                .read(move |conn| {
                    let key = keys::find_by_hash(conn, &hash)?;
                    let customer = customer::get(conn, &key.customer_id)?;
                    Ok((key, customer))
                })
                .await;
            let (key, _customer) = match found {
                Ok(found) => found,
                Err(callplane_schema::DbError::NotFound) => return Err(unauthenticated().cause("unknown access key")),
                Err(e) => return Err(e.into()),
            };
            if !key.is_active(callplane_schema::time::now()) {
                return Err(unauthenticated().cause("access key revoked or expired"));
            }
            let principal = Arc::new(Principal::AccessKey { key_id: key.id, customer_id: key.customer_id });
            // Expiry is checked again once the entry ages out; keys expiring sooner
            // than the cache TTL are simply not cached.
            let expires_soon =
                key.tm_expire.is_some_and(|t| t < callplane_schema::time::now() + chrono::Duration::seconds(30));
            if !expires_soon {
                self.cache.insert(cache_key, principal.clone());
            }
            return Ok(principal);
        }

        let claims = self.jwt.verify(credential).map_err(|e| unauthenticated().cause(e))?;
        let cache_key = format!("a:{}", claims.agent_id);
        if let Some(principal) = self.cache.get(&cache_key) {
            return Ok(principal);
        }
        let agent_id = claims.agent_id.clone();
        let found = self
            .db
            .read(move |conn| {
                let agent = agent::get_any(conn, &agent_id)?;
                if let Some(customer_id) = &agent.customer_id {
                    customer::get(conn, customer_id)?;
                }
                Ok(agent)
            })
            .await;
        let agent = match found {
            Ok(agent) => agent,
            Err(callplane_schema::DbError::NotFound) => {
                return Err(unauthenticated().cause("the token's agent or customer no longer exists"));
            }
            Err(e) => return Err(e.into()),
        };
        let principal = Arc::new(match (agent.role, agent.customer_id) {
            (Role::SuperAdmin, _) => Principal::SuperAdmin { agent_id: agent.id, username: agent.username },
            (role, Some(customer_id)) => {
                Principal::Agent { agent_id: agent.id, customer_id, username: agent.username, role }
            }
            (_, None) => return Err(ApiError::internal("an agent without a customer that is not a super-admin")),
        });
        self.cache.insert(cache_key, principal.clone());
        Ok(principal)
    }

    /// 429 with `Retry-After` when the caller's customer has used its budget.
    pub fn limit(&self, principal: &Principal) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let key = match principal {
            Principal::Agent { customer_id, .. } | Principal::AccessKey { customer_id, .. } => customer_id.to_string(),
            Principal::SuperAdmin { agent_id, .. } => agent_id.to_string(),
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::new(Reason::RateLimitExceeded).retry_after(wait.as_secs_f64().ceil() as u64)
        })
    }

    pub fn forget_agent(&self, agent_id: &AgentId) {
        self.cache.invalidate(&format!("a:{agent_id}"));
    }

    pub fn forget_key(&self, token_hash: &str) {
        self.cache.invalidate(&format!("k:{token_hash}"));
    }

    /// After a customer is deleted: every credential of it must be looked up again.
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }
}
