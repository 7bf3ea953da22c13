//! Agent statistics: a durable subscriber of call events. For every agent a call
//! belongs to (its owner, and agents as source or destination) it counts calls in
//! progress, calls handled and talk time, and publishes each change as
//! `agent.stats_updated` on the agent's topics.

use actix::prelude::*;
use callplane_schema::models::agent_stats::{self, AgentStats};
use callplane_schema::models::call::Call;
use callplane_schema::models::event::{Event, NewEvent};
use callplane_schema::{DbError, WriteCtx};

use crate::bus::{Durable, DurableSubscriber};

pub struct AgentStatsSubscriber;

impl AgentStatsSubscriber {
    pub fn start(db: callplane_schema::Db, bus: Addr<crate::bus::EventBus>) -> Addr<Durable<AgentStatsSubscriber>> {
        Durable::start(AgentStatsSubscriber, (), db, bus)
    }
}

impl DurableSubscriber for AgentStatsSubscriber {
    const NAME: &'static str = "agent_stats";
    type Config = ();
    type Outcome = ();

    fn wants(event: &Event) -> bool {
        matches!(event.event_type.as_str(), "call.answered" | "call.ended")
    }

    fn write(_: &(), tx: &mut WriteCtx<'_>, events: &[&Event]) -> Result<(), DbError> {
        for event in events {
            let call: Call =
                serde_json::from_str(&event.data).map_err(|e| DbError::Other(format!("event {}: {e}", event.id)))?;
            let answered = event.event_type == "call.answered";
            // An unanswered call that ends changes nothing.
            if !answered && call.tm_answer.is_none() {
                continue;
            }
            for agent_id in call.agents() {
                let now = event.tm_create;
                let mut stats = agent_stats::get(tx.conn, &agent_id)?
                    .unwrap_or_else(|| AgentStats::empty(agent_id.clone(), call.customer_id.clone(), now))
                    .as_of(now);
                if answered {
                    stats.active_calls += 1;
                } else {
                    stats.active_calls = (stats.active_calls - 1).max(0);
                    stats.calls_today += 1;
                    stats.calls_total += 1;
                    stats.talk_seconds_today += call.duration;
                    stats.talk_seconds_total += call.duration;
                }
                stats.tm_update = now;
                agent_stats::save(tx.conn, &stats)?;
                tx.emit(NewEvent::new("agent.stats_updated", Some(&stats.customer_id), &stats.agent_id, &stats)?)?;
            }
        }
        Ok(())
    }

    fn committed(&mut self, (): (), _: &mut Context<Durable<Self>>) {}
}
