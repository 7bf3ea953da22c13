//! Agent statistics, kept by the agent-stats subscriber from call events: calls in
//! progress, calls handled and talk time today (UTC) and in total.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConn;
use crate::error::DbError;
use crate::ids::{AgentId, CustomerId};
use crate::schema::agent_stats;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Serialize, utoipa::ToSchema)]
#[diesel(table_name = agent_stats)]
pub struct AgentStats {
    pub agent_id: AgentId,
    pub customer_id: CustomerId,
    /// The UTC day `calls_today` and `talk_seconds_today` count.
    pub day: String,
    /// Answered calls not yet ended.
    pub active_calls: i64,
    /// Answered calls that ended today.
    pub calls_today: i64,
    pub talk_seconds_today: i64,
    pub calls_total: i64,
    pub talk_seconds_total: i64,
    #[serde(with = "crate::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: NaiveDateTime,
}

impl AgentStats {
    pub fn empty(agent_id: AgentId, customer_id: CustomerId, now: NaiveDateTime) -> AgentStats {
        AgentStats {
            agent_id,
            customer_id,
            day: day(now),
            active_calls: 0,
            calls_today: 0,
            talk_seconds_today: 0,
            calls_total: 0,
            talk_seconds_total: 0,
            tm_update: now,
        }
    }

    /// The same figures as seen at `now`: the day's counters restart on a new day.
    pub fn as_of(mut self, now: NaiveDateTime) -> AgentStats {
        let today = day(now);
        if self.day != today {
            self.day = today;
            self.calls_today = 0;
            self.talk_seconds_today = 0;
        }
        self
    }
}

pub fn day(t: NaiveDateTime) -> String {
    NaiveDate::from(t).format("%Y-%m-%d").to_string()
}

pub fn get(conn: &mut DbConn, agent_id: &AgentId) -> Result<Option<AgentStats>, DbError> {
    Ok(agent_stats::table.find(agent_id).select(AgentStats::as_select()).first(conn).optional()?)
}

pub fn save(conn: &mut DbConn, stats: &AgentStats) -> Result<(), DbError> {
    let updated = diesel::update(agent_stats::table.find(&stats.agent_id)).set(stats).execute(conn)?;
    if updated == 0 {
        diesel::insert_into(agent_stats::table).values(stats).execute(conn)?;
    }
    Ok(())
}
