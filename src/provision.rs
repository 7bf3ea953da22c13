//! Creating tenants: a customer with its billing account and first admin, the
//! `bootstrap` command, the first start on an empty database, and super-admins.

use callplane_schema::ids::{AgentId, CustomerId};
use callplane_schema::models::accesskey;
use callplane_schema::models::agent::{self, AgentRow, Role};
use callplane_schema::models::billing_account::{self, BillingAccountRow, Rates};
use callplane_schema::models::customer::{self, Customer};
use callplane_schema::models::event::NewEvent;
use callplane_schema::{Db, DbError};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::auth::{self, password};

/// What a new customer starts with.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub customer: Customer,
    pub balance: i64,
    /// Username and argon2 hash of the first admin, if one is to be made.
    pub admin: Option<(String, String)>,
}

/// Inserts the customer, its billing account and its first admin in one transaction.
pub async fn create_customer(db: &Db, new: NewCustomer) -> Result<(Customer, Option<AgentRow>), DbError> {
    db.write(move |tx| {
        customer::insert(tx.conn, &new.customer)?;
        billing_account::insert(
            tx.conn,
            &BillingAccountRow::new(new.customer.id.clone(), new.balance, &Rates::default()),
        )?;
        let admin = match &new.admin {
            Some((username, hash)) => {
                let row = AgentRow::new(Some(new.customer.id.clone()), username, hash.clone(), Role::Admin);
                agent::insert(tx.conn, &row)?;
                let view = row.view();
                tx.emit(NewEvent::new("agent.created", Some(&new.customer.id), &view.id, &view)?)?;
                Some(row)
            }
            None => None,
        };
        Ok((new.customer.clone(), admin))
    })
    .await
}

/// What `callplane bootstrap` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Bootstrapped {
    pub customer_id: CustomerId,
    pub agent_id: AgentId,
    pub username: String,
    pub accesskey: String,
    pub balance: i64,
    /// False when the username already existed and nothing was created.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the username {0:?} exists with another password")]
    WrongPassword(String),
    #[error("the username {0:?} belongs to a super-admin")]
    SuperAdmin(String),
    #[error("the bootstrap access key of {0:?} was revoked; create a new key with POST /v1.0/accesskeys")]
    KeyRevoked(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Creates a customer, an admin agent `username`, an access key and a balance; for a
/// username that exists already (with the same password) it creates nothing and prints
/// the same answer again. The key is derived from the JWT secret and the agent id, so
/// a second run can show it again although only its hash is stored.
pub async fn bootstrap(
    db: &Db,
    jwt_secret: &[u8],
    username: &str,
    password_plain: &str,
    balance: i64,
) -> Result<Bootstrapped, BootstrapError> {
    crate::validate::username(username).map_err(|e| BootstrapError::Invalid(format!("{e}")))?;
    crate::validate::password(password_plain).map_err(|e| BootstrapError::Invalid(format!("{e}")))?;
    if balance < 0 {
        return Err(BootstrapError::Invalid("balance must not be negative".into()));
    }
    let lookup = username.to_owned();
    let existing = match db.read(move |conn| agent::get_by_username(conn, &lookup)).await {
        Ok(agent) => Some(agent),
        Err(DbError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };

    let (agent, created) = match existing {
        Some(agent) => {
            let stored = agent.password_hash.clone();
            let plain = password_plain.to_owned();
            let matches = tokio::task::spawn_blocking(move || password::verify(&plain, &stored))
                .await
                .map_err(|e| DbError::Other(e.to_string()))?;
            if !matches {
                return Err(BootstrapError::WrongPassword(username.to_owned()));
            }
            (agent, false)
        }
        None => {
            let plain = password_plain.to_owned();
            let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
                .await
                .map_err(|e| DbError::Other(e.to_string()))?
                .map_err(DbError::Other)?;
            let new = NewCustomer {
                customer: Customer::new(format!("{username}'s company")),
                balance,
                admin: Some((username.to_owned(), hash)),
            };
            let (_, admin) = create_customer(db, new).await?;
            (admin.ok_or_else(|| DbError::Other("the admin was not created".into()))?, true)
        }
    };
    let Some(customer_id) = agent.customer_id.clone() else {
        return Err(BootstrapError::SuperAdmin(username.to_owned()));
    };

    let token = derived_key(jwt_secret, &agent.id);
    let hash = auth::accesskey::hash(&token);
    let key = auth::accesskey::row(&customer_id, &token, "bootstrap".into(), String::new(), 0);
    let cid = customer_id.clone();
    let (revoked, balance) = db
        .write(move |tx| {
            let revoked = match accesskey::find_by_hash(tx.conn, &hash) {
                Ok(found) => found.tm_delete.is_some(),
                Err(DbError::NotFound) => {
                    accesskey::insert(tx.conn, &key)?;
                    false
                }
                Err(e) => return Err(e),
            };
            let balance = billing_account::get_by_customer(tx.conn, &cid)?.balance;
            Ok((revoked, balance))
        })
        .await?;
    if revoked {
        return Err(BootstrapError::KeyRevoked(username.to_owned()));
    }
    Ok(Bootstrapped { customer_id, agent_id: agent.id, username: agent.username, accesskey: token, balance, created })
}

fn derived_key(secret: &[u8], agent_id: &AgentId) -> String {
    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC key");
    mac.update(b"callplane-bootstrap-accesskey:");
    mac.update(agent_id.as_str().as_bytes());
    format!("{}{}", auth::accesskey::PREFIX, hex::encode(mac.finalize().into_bytes()))
}

/// The credentials made on the first start, printed once.
pub struct FirstStart {
    pub bootstrapped: Bootstrapped,
    pub password: String,
}

/// On an empty database (no customer, no agent), creates user `admin` with a random
/// password so that a newcomer can use the API at once.
pub async fn first_start(db: &Db, jwt_secret: &[u8], balance: i64) -> Result<Option<FirstStart>, BootstrapError> {
    let empty = db.read(|conn| Ok(customer::count(conn)? == 0 && agent::count(conn)? == 0)).await?;
    if !empty {
        return Ok(None);
    }
    let bytes: [u8; 12] = rand::random();
    let password = hex::encode(bytes);
    let bootstrapped = bootstrap(db, jwt_secret, "admin", &password, balance).await?;
    Ok(Some(FirstStart { bootstrapped, password }))
}

/// Creates a super-admin login (command line only).
pub async fn create_superadmin(db: &Db, username: &str, password_plain: &str) -> Result<AgentId, BootstrapError> {
    crate::validate::username(username).map_err(|e| BootstrapError::Invalid(format!("{e}")))?;
    crate::validate::password(password_plain).map_err(|e| BootstrapError::Invalid(format!("{e}")))?;
    let plain = password_plain.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&plain))
        .await
        .map_err(|e| DbError::Other(e.to_string()))?
        .map_err(DbError::Other)?;
    let row = AgentRow::new(None, username, hash, Role::SuperAdmin);
    let id = row.id.clone();
    db.write(move |tx| agent::insert(tx.conn, &row)).await.map_err(|e| match e {
        DbError::Conflict(_) => BootstrapError::Invalid(format!("the username {username:?} is taken")),
        e => e.into(),
    })?;
    Ok(id)
}
