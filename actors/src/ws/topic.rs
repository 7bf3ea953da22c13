//! Topics: what a WebSocket client subscribes to, and which topics an event belongs to.
//!
//! A topic is `customer_id:<cid>[:<resource>[:<id>]]` or `agent_id:<aid>[:<resource>[:<id>]]`.
//! `*` stands for any one segment, and a topic that stops early covers everything below
//! it. An event belongs to one concrete topic per owner (`customer_id:<cid>:call:<call id>`,
//! plus `agent_id:<aid>:call:<call id>` for each agent on the call), and a subscription
//! matches it when the subscription is that topic with some segments replaced by `*` or
//! left off. So the subscriptions that can match an event are a short, fixed list of
//! strings per owner ([`for_each_key`]), and the hub finds them by looking each one up
//! instead of testing every subscription.

use std::fmt::Write as _;

use callplane_schema::models::event::Event;

/// The longest resource name and id segment a topic may carry.
const MAX_SEGMENT: usize = 64;

/// Whose events a topic follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Customer(String),
    Agent(String),
    /// `customer_id:*` or `agent_id:*`: valid syntax, never allowed.
    Anyone,
}

/// A subscription, checked and in its canonical spelling (UUIDs in lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub owner: Owner,
    /// The resource segment when it names one (not `*`, not left off).
    pub resource: Option<String>,
    canonical: String,
}

impl Topic {
    pub fn parse(raw: &str) -> Result<Topic, String> {
        let segments: Vec<&str> = raw.split(':').collect();
        if !(2..=4).contains(&segments.len()) {
            return Err("expected customer_id:<id>[:<resource>[:<id>]] or agent_id:<id>[:<resource>[:<id>]]".into());
        }
        let owner_id = match segments[1] {
            "*" => None,
            id => Some(uuid::Uuid::parse_str(id).map_err(|_| format!("{id:?} is not a UUID"))?.to_string()),
        };
        let owner = match (segments[0], owner_id) {
            (_, None) if matches!(segments[0], "customer_id" | "agent_id") => Owner::Anyone,
            ("customer_id", Some(id)) => Owner::Customer(id),
            ("agent_id", Some(id)) => Owner::Agent(id),
            (other, _) => return Err(format!("{other:?}: a topic starts with customer_id: or agent_id:")),
        };
        let resource = match segments.get(2) {
            None | Some(&"*") => None,
            Some(r) if is_resource(r) => Some((*r).to_owned()),
            Some(r) => return Err(format!("{r:?} is not a resource name (lowercase letters, digits, _)")),
        };
        let id = match segments.get(3) {
            None => None,
            Some(&"*") => Some("*".to_owned()),
            Some(id) => match uuid::Uuid::parse_str(id) {
                Ok(uuid) => Some(uuid.to_string()),
                Err(_) if is_id(id) => Some((*id).to_owned()),
                Err(_) => return Err(format!("{id:?} is not an id")),
            },
        };
        let mut canonical = String::with_capacity(raw.len());
        canonical.push_str(segments[0]);
        canonical.push(':');
        canonical.push_str(match &owner {
            Owner::Customer(id) | Owner::Agent(id) => id,
            Owner::Anyone => "*",
        });
        if let Some(segment) = segments.get(2) {
            canonical.push(':');
            canonical.push_str(segment);
        }
        if let Some(id) = id {
            canonical.push(':');
            canonical.push_str(&id);
        }
        Ok(Topic { owner, resource, canonical })
    }

    pub fn as_str(&self) -> &str {
        &self.canonical
    }
}

fn is_resource(s: &str) -> bool {
    s.len() <= MAX_SEGMENT
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_id(s: &str) -> bool {
    (1..=MAX_SEGMENT).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The concrete topic of an event under one owner: `<prefix>:<resource>:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTopic<'a> {
    /// `customer_id:<cid>` or `agent_id:<aid>`.
    pub prefix: String,
    pub resource: &'a str,
    pub id: String,
}

/// Calls every subscription key that matches `topic`, most specific first, with a
/// reused buffer. Stops when `visit` returns false.
pub fn for_each_key(topic: &EventTopic<'_>, buf: &mut String, mut visit: impl FnMut(&str) -> bool) {
    let (p, r, i) = (&topic.prefix, topic.resource, &topic.id);
    let forms: [(&str, &str); 7] = [(r, i), (r, "*"), ("*", i), ("*", "*"), (r, ""), ("*", ""), ("", "")];
    for (resource, id) in forms {
        buf.clear();
        buf.push_str(p);
        if !resource.is_empty() {
            let _ = write!(buf, ":{resource}");
        }
        if !id.is_empty() {
            let _ = write!(buf, ":{id}");
        }
        if !visit(buf) {
            return;
        }
    }
}

/// The topics an event belongs to: its customer's, and with `with_agents`, those of the
/// agents it concerns (the agent of an `agent.*` event; the agents a call connects).
pub fn event_topics(event: &Event, with_agents: bool) -> Vec<EventTopic<'_>> {
    let Some(customer_id) = &event.customer_id else { return Vec::new() };
    let resource = event.resource_type();
    // Reading the data costs a JSON parse: only when someone follows agents, or when the
    // agent is the resource itself.
    let concerned = if with_agents || resource == "agent" { Concerned::of(event) } else { Concerned::Nobody };
    let id = match (&concerned, resource) {
        // Statistics may be keyed by something else; the agent is what subscribers name.
        (Concerned::Agent(agent), "agent") => agent.clone(),
        _ => event.resource_id.clone(),
    };
    let mut topics = vec![EventTopic { prefix: format!("customer_id:{customer_id}"), resource, id: id.clone() }];
    if with_agents {
        let agents = match concerned {
            Concerned::Agent(agent) => vec![agent],
            Concerned::Call(agents) => agents,
            Concerned::Nobody => Vec::new(),
        };
        for agent in agents {
            topics.push(EventTopic { prefix: format!("agent_id:{agent}"), resource, id: id.clone() });
        }
    }
    topics
}

/// The agents an event concerns.
enum Concerned {
    /// An `agent.*` event: this agent.
    Agent(String),
    /// A `call.*` event: the agents among the call's source and destination.
    Call(Vec<String>),
    Nobody,
}

impl Concerned {
    fn of(event: &Event) -> Concerned {
        #[derive(serde::Deserialize)]
        struct Address {
            #[serde(rename = "type")]
            kind: String,
            target: String,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            agent_id: Option<String>,
            source: Option<Address>,
            destination: Option<Address>,
        }
        match event.resource_type() {
            "agent" => {
                let data: Option<Data> = serde_json::from_str(&event.data).ok();
                let agent = data.and_then(|d| d.agent_id).unwrap_or_else(|| event.resource_id.clone());
                Concerned::Agent(agent.to_lowercase())
            }
            "call" => {
                let Ok(data) = serde_json::from_str::<Data>(&event.data) else { return Concerned::Nobody };
                let mut agents: Vec<String> = [data.source, data.destination]
                    .into_iter()
                    .flatten()
                    .filter(|a| a.kind == "agent")
                    .map(|a| a.target.to_lowercase())
                    .collect();
                agents.dedup();
                Concerned::Call(agents)
            }
            _ => Concerned::Nobody,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callplane_schema::ids::{CustomerId, EventId};

    const CID: &str = "0190c5e2-5a3b-7c4d-8e9f-0a1b2c3d4e5f";
    const AID: &str = "0190c5e2-5a3b-7c4d-8e9f-000000000001";
    const CALL: &str = "0190c5e2-5a3b-7c4d-8e9f-0000000000c1";

    fn event(event_type: &str, resource_id: &str, data: serde_json::Value) -> Event {
        Event {
            seq: 1,
            id: EventId::new(),
            customer_id: Some(CID.parse::<CustomerId>().unwrap()),
            event_type: event_type.to_owned(),
            resource_id: resource_id.to_owned(),
            data: data.to_string(),
            tm_create: callplane_schema::time::now(),
        }
    }

    fn keys(topic: &EventTopic<'_>) -> Vec<String> {
        let mut all = Vec::new();
        for_each_key(topic, &mut String::new(), |k| {
            all.push(k.to_owned());
            true
        });
        all
    }

    #[test]
    fn topics_are_checked_and_canonical() {
        let upper = format!("customer_id:{}:call:*", CID.to_uppercase());
        let topic = Topic::parse(&upper).unwrap();
        assert_eq!(topic.as_str(), format!("customer_id:{CID}:call:*"));
        assert_eq!(topic.owner, Owner::Customer(CID.to_owned()));
        assert_eq!(topic.resource.as_deref(), Some("call"));
        assert_eq!(Topic::parse(&format!("agent_id:{AID}")).unwrap().owner, Owner::Agent(AID.to_owned()));
        assert_eq!(Topic::parse("customer_id:*:call").unwrap().owner, Owner::Anyone);
        assert_eq!(Topic::parse(&format!("customer_id:{CID}:*:{CALL}")).unwrap().resource, None);

        for bad in [
            "",
            "customer_id",
            "customer_id:123:call",
            "user_id:0190c5e2-5a3b-7c4d-8e9f-0a1b2c3d4e5f",
            &format!("customer_id:{CID}:Call"),
            &format!("customer_id:{CID}:call:"),
            &format!("customer_id:{CID}:call:a b"),
            &format!("customer_id:{CID}:call:*:extra"),
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn an_event_is_found_under_every_form_that_matches_it() {
        let e = event("call.answered", CALL, serde_json::json!({"id": CALL}));
        let topics = event_topics(&e, true);
        assert_eq!(topics.len(), 1, "no agents on this call");
        let p = format!("customer_id:{CID}");
        assert_eq!(
            keys(&topics[0]),
            [
                format!("{p}:call:{CALL}"),
                format!("{p}:call:*"),
                format!("{p}:*:{CALL}"),
                format!("{p}:*:*"),
                format!("{p}:call"),
                format!("{p}:*"),
                p.clone(),
            ]
        );
        // Each of them is a valid subscription spelling of itself.
        for key in keys(&topics[0]) {
            assert_eq!(Topic::parse(&key).unwrap().as_str(), key);
        }
    }

    #[test]
    fn agents_on_a_call_and_agent_events_get_agent_topics() {
        let agent = serde_json::json!({"type": "agent", "target": AID.to_uppercase()});
        let tel = serde_json::json!({"type": "tel", "target": "+15551234567"});
        let e = event("call.created", CALL, serde_json::json!({"id": CALL, "source": tel, "destination": agent}));
        let topics = event_topics(&e, true);
        assert_eq!(topics[1].prefix, format!("agent_id:{AID}"));
        assert_eq!((topics[1].resource, topics[1].id.as_str()), ("call", CALL));
        assert_eq!(event_topics(&e, false).len(), 1);

        let status = event("agent.status_updated", AID, serde_json::json!({"id": AID, "status": "away"}));
        let topics = event_topics(&status, true);
        assert_eq!(topics[1].prefix, format!("agent_id:{AID}"));
        assert_eq!((topics[1].resource, topics[1].id.as_str()), ("agent", AID));

        // Statistics name their agent in the data, whatever the row's own id.
        let stats = event("agent.stats_updated", "stats-row", serde_json::json!({"agent_id": AID, "active_calls": 1}));
        let topics = event_topics(&stats, true);
        assert_eq!(topics[0].id, AID);
        assert_eq!(topics[1].prefix, format!("agent_id:{AID}"));

        let other = event("billing.created", "x", serde_json::json!({}));
        assert_eq!(event_topics(&other, true).len(), 1);
    }
}
