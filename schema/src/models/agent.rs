//! Agents: the logins of a customer (people or services), and the super-admins, who
//! belong to no customer.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{AgentId, CustomerId};
use crate::models::address::Address;
use crate::page::{Cursor, Page, PageRequest};
use crate::schema::agents;

crate::text_enum!(
    /// What an agent may do; permissions derive from it.
    Role {
        Admin = "admin",
        Manager = "manager",
        Agent = "agent",
        /// Operator of the whole installation; created only from the command line.
        SuperAdmin = "superadmin",
    }
);

crate::text_enum!(
    AgentStatus {
        Available = "available",
        Away = "away",
        Busy = "busy",
        Offline = "offline",
        Ringing = "ringing",
    }
);

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = agents)]
pub struct AgentRow {
    pub id: AgentId,
    pub customer_id: Option<CustomerId>,
    pub username: String,
    pub password_hash: String,
    pub name: String,
    pub detail: String,
    pub role: Role,
    pub status: AgentStatus,
    /// JSON array of [`Address`].
    pub addresses: String,
    pub tm_create: NaiveDateTime,
    pub tm_update: NaiveDateTime,
}

/// An agent as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub customer_id: Option<CustomerId>,
    pub username: String,
    pub name: String,
    pub detail: String,
    pub role: Role,
    pub status: AgentStatus,
    pub addresses: Vec<Address>,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: NaiveDateTime,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl AgentRow {
    pub fn new(customer_id: Option<CustomerId>, username: &str, password_hash: String, role: Role) -> AgentRow {
        let now = crate::time::now();
        AgentRow {
            id: AgentId::new(),
            customer_id,
            username: username.to_owned(),
            password_hash,
            name: String::new(),
            detail: String::new(),
            role,
            status: AgentStatus::Offline,
            addresses: "[]".to_owned(),
            tm_create: now,
            tm_update: now,
        }
    }

    pub fn view(&self) -> Agent {
        Agent {
            id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            username: self.username.clone(),
            name: self.name.clone(),
            detail: self.detail.clone(),
            role: self.role,
            status: self.status,
            // Written only by this module from a Vec<Address>.
            addresses: serde_json::from_str(&self.addresses).unwrap_or_default(),
            tm_create: self.tm_create,
            tm_update: self.tm_update,
        }
    }
}

/// The fields an update may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = agents)]
pub struct AgentChanges {
    pub name: Option<String>,
    pub detail: Option<String>,
    pub role: Option<Role>,
    pub status: Option<AgentStatus>,
    pub password_hash: Option<String>,
    pub addresses: Option<String>,
}

pub fn encode_addresses(addresses: &[Address]) -> String {
    serde_json::to_string(addresses).unwrap_or_else(|_| "[]".to_owned())
}

pub fn insert(conn: &mut DbConn, agent: &AgentRow) -> Result<(), DbError> {
    diesel::insert_into(agents::table).values(agent).execute(conn)?;
    Ok(())
}

/// An agent of `customer_id`; another customer's agent is not found.
pub fn get(conn: &mut DbConn, customer_id: &CustomerId, id: &AgentId) -> Result<AgentRow, DbError> {
    Ok(agents::table.find(id).filter(agents::customer_id.eq(customer_id)).select(AgentRow::as_select()).first(conn)?)
}

/// Any agent or super-admin by id (authentication).
pub fn get_any(conn: &mut DbConn, id: &AgentId) -> Result<AgentRow, DbError> {
    Ok(agents::table.find(id).select(AgentRow::as_select()).first(conn)?)
}

pub fn get_by_username(conn: &mut DbConn, username: &str) -> Result<AgentRow, DbError> {
    Ok(agents::table.filter(agents::username.eq(username)).select(AgentRow::as_select()).first(conn)?)
}

pub fn list(conn: &mut DbConn, customer_id: &CustomerId, page: &PageRequest) -> Result<Page<AgentRow>, DbError> {
    let query = agents::table.filter(agents::customer_id.eq(customer_id)).into_boxed();
    let rows = crate::paginate!(query, agents, page).select(AgentRow::as_select()).load(conn)?;
    Ok(Page::from_rows(rows, page, |a: &AgentRow| Cursor { tm_create: a.tm_create, id: a.id.to_string() }))
}

pub fn list_superadmins(conn: &mut DbConn) -> Result<Vec<AgentRow>, DbError> {
    Ok(agents::table
        .filter(agents::role.eq(Role::SuperAdmin))
        .order(agents::tm_create.asc())
        .select(AgentRow::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut DbConn) -> Result<i64, DbError> {
    Ok(agents::table.count().get_result(conn)?)
}

/// Admins of a customer: the last one may not be removed or demoted.
pub fn count_admins(conn: &mut DbConn, customer_id: &CustomerId) -> Result<i64, DbError> {
    Ok(agents::table
        .filter(agents::customer_id.eq(customer_id))
        .filter(agents::role.eq(Role::Admin))
        .count()
        .get_result(conn)?)
}

pub fn update(
    conn: &mut DbConn,
    customer_id: &CustomerId,
    id: &AgentId,
    changes: &AgentChanges,
) -> Result<AgentRow, DbError> {
    let touched = diesel::update(agents::table.find(id).filter(agents::customer_id.eq(customer_id)))
        .set((changes, agents::tm_update.eq(crate::time::now())))
        .execute(conn)?;
    if touched == 0 {
        return Err(DbError::NotFound);
    }
    get(conn, customer_id, id)
}

pub fn delete(conn: &mut DbConn, customer_id: &CustomerId, id: &AgentId) -> Result<AgentRow, DbError> {
    let agent = get(conn, customer_id, id)?;
    diesel::delete(agents::table.find(id)).execute(conn)?;
    Ok(agent)
}
