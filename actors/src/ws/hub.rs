//! The session manager: which session follows which topic, and routing of committed
//! events to them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use bytestring::ByteString;
use callplane_schema::ids::CustomerId;
use callplane_schema::models::event::Event;

use super::WsMetrics;
use super::session::SessionId;
use super::topic::{self, EventTopic};
use crate::bus::Deliver;

/// To a session, from the hub.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Push {
    /// The frames of the events that matched the session's topics, in commit order.
    /// `seq` numbers the hub's pushes to this session (1, 2, …); `missed` counts frames
    /// the hub could not hand over since the previous push (the session's mailbox was
    /// full).
    Events { seq: u64, frames: Vec<ByteString>, missed: u64 },
    /// The daemon is stopping.
    Shutdown,
}

/// A session has started.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    pub customer_id: CustomerId,
    /// Resource kinds whose events the session never gets.
    pub hidden: Vec<String>,
    pub push: Recipient<Push>,
}

/// A session has stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
}

/// Adds checked, canonical topics. The answer is the number of pushes sent to the
/// session before the change (the session acknowledges after it has taken them), or
/// `None` for a session the hub does not know.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct AddTopics {
    pub session: SessionId,
    pub topics: Vec<String>,
}

/// Removes topics; answered like [`AddTopics`].
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct RemoveTopics {
    pub session: SessionId,
    pub topics: Vec<String>,
}

/// Tells every session to close (the daemon is stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

struct Entry {
    customer_id: CustomerId,
    hidden: Vec<String>,
    push: Recipient<Push>,
    topics: HashSet<Arc<str>>,
    /// Pushes handed to the session so far.
    pushed: u64,
    /// Frames not handed over since the last push that went through.
    missed: u64,
}

impl Entry {
    fn may_see(&self, event: &Event) -> bool {
        event.customer_id.as_ref() == Some(&self.customer_id) && !self.hidden.iter().any(|h| h == event.resource_type())
    }
}

pub struct WsHub {
    sessions: HashMap<SessionId, Entry>,
    /// Topic → the sessions subscribed to exactly that topic.
    index: HashMap<Arc<str>, HashSet<SessionId>>,
    /// How many index keys are `agent_id:` topics: while there are none, events are not
    /// searched for the agents they concern.
    agent_keys: usize,
    metrics: WsMetrics,
}

/// Mailbox of the hub: the bus offers it each committed batch with `try_send`, and a
/// burst of batches must not be lost to a few subscription changes.
const MAILBOX: usize = 1024;

impl WsHub {
    pub fn new(metrics: WsMetrics) -> WsHub {
        WsHub { sessions: HashMap::new(), index: HashMap::new(), agent_keys: 0, metrics }
    }

    fn add(&mut self, session: SessionId, topic: String) {
        let Some(entry) = self.sessions.get_mut(&session) else { return };
        if entry.topics.contains(topic.as_str()) {
            return;
        }
        let key: Arc<str> = match self.index.get_key_value(topic.as_str()) {
            Some((key, _)) => key.clone(),
            None => {
                if topic.starts_with("agent_id:") {
                    self.agent_keys += 1;
                }
                topic.into()
            }
        };
        entry.topics.insert(key.clone());
        self.index.entry(key).or_default().insert(session);
    }

    fn remove(&mut self, session: SessionId, topic: &str) {
        let Some(subscribers) = self.index.get_mut(topic) else { return };
        subscribers.remove(&session);
        if subscribers.is_empty() {
            self.index.remove(topic);
            if topic.starts_with("agent_id:") {
                self.agent_keys -= 1;
            }
        }
    }

    fn drop_session(&mut self, session: SessionId) {
        if let Some(entry) = self.sessions.remove(&session) {
            for topic in entry.topics {
                self.remove(session, &topic);
            }
        }
    }

    /// The frames each session gets for a batch: per event, the keys that can match it
    /// are looked up, most specific first; a session gets the event once, under the
    /// first of its topics that matched. One frame per (event, topic) is shared by all
    /// the sessions it goes to.
    fn route(&self, events: &[Event]) -> HashMap<SessionId, Vec<ByteString>> {
        let mut out: HashMap<SessionId, Vec<ByteString>> = HashMap::new();
        let mut matched: HashSet<SessionId> = HashSet::new();
        let mut key = String::new();
        let with_agents = self.agent_keys > 0;
        for event in events {
            matched.clear();
            for topic in topic::event_topics(event, with_agents) {
                self.route_topic(event, &topic, &mut key, &mut matched, &mut out);
            }
        }
        out
    }

    fn route_topic(
        &self,
        event: &Event,
        topic: &EventTopic<'_>,
        key: &mut String,
        matched: &mut HashSet<SessionId>,
        out: &mut HashMap<SessionId, Vec<ByteString>>,
    ) {
        topic::for_each_key(topic, key, |key| {
            let Some(subscribers) = self.index.get(key) else { return true };
            let mut frame: Option<ByteString> = None;
            for session in subscribers {
                if !matched.insert(*session) {
                    continue;
                }
                let Some(entry) = self.sessions.get(session) else { continue };
                if !entry.may_see(event) {
                    continue;
                }
                let frame = frame.get_or_insert_with(|| ByteString::from(event.to_json(Some(key))));
                out.entry(*session).or_default().push(frame.clone());
            }
            true
        });
    }
}

impl Actor for WsHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

impl Handler<Deliver> for WsHub {
    type Result = ();

    fn handle(&mut self, Deliver(events): Deliver, _: &mut Context<Self>) {
        if self.index.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for (session, frames) in self.route(&events) {
            let Some(entry) = self.sessions.get_mut(&session) else { continue };
            let n = frames.len() as u64;
            let push = Push::Events { seq: entry.pushed + 1, frames, missed: entry.missed };
            match entry.push.try_send(push) {
                Ok(()) => {
                    entry.pushed += 1;
                    entry.missed = 0;
                }
                Err(SendError::Full(_)) => {
                    entry.missed += n;
                    self.metrics.dropped.inc_by(n);
                }
                Err(SendError::Closed(_)) => gone.push(session),
            }
        }
        for session in gone {
            self.drop_session(session);
        }
    }
}

impl Handler<Connect> for WsHub {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        let entry = Entry {
            customer_id: msg.customer_id,
            hidden: msg.hidden,
            push: msg.push,
            topics: HashSet::new(),
            pushed: 0,
            missed: 0,
        };
        self.sessions.insert(msg.session, entry);
    }
}

impl Handler<Disconnect> for WsHub {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        self.drop_session(msg.session);
    }
}

impl Handler<AddTopics> for WsHub {
    type Result = Option<u64>;

    fn handle(&mut self, msg: AddTopics, _: &mut Context<Self>) -> Option<u64> {
        let pushed = self.sessions.get(&msg.session)?.pushed;
        for topic in msg.topics {
            self.add(msg.session, topic);
        }
        Some(pushed)
    }
}

impl Handler<RemoveTopics> for WsHub {
    type Result = Option<u64>;

    fn handle(&mut self, msg: RemoveTopics, _: &mut Context<Self>) -> Option<u64> {
        let entry = self.sessions.get_mut(&msg.session)?;
        let pushed = entry.pushed;
        let mut removed = Vec::new();
        for topic in &msg.topics {
            if entry.topics.remove(topic.as_str()) {
                removed.push(topic);
            }
        }
        for topic in removed {
            self.remove(msg.session, topic);
        }
        Some(pushed)
    }
}

impl Handler<CloseAll> for WsHub {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) {
        for entry in self.sessions.values() {
            // A session too busy to take this is stopped with the server all the same.
            let _ = entry.push.try_send(Push::Shutdown);
        }
    }
}
