//! Flow actions: what a flow (saved, or given inline with a call) is made of.
//!
//! [`parse`] turns the JSON a client sends into typed [`Action`]s and refuses anything a
//! run could trip over later: unknown types, missing or wrongly typed options, ids used
//! twice, and jumps (`next_id`, `target_id`, `target_ids`, `default_target_id`,
//! `false_target_id`) to actions the flow does not have. Every refusal names the action
//! by its index and, when the client gave one, its id. Ids the client left out are
//! generated, so a stored flow always has them.
//!
//! Address syntax (E.164 and friends) is the gateway's to check; option strings may
//! carry `${variable}` references, substituted when the action runs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::ids::ConferenceId;
use crate::models::address::Address;
use crate::models::call::HangupReason;

/// Ids are per flow, not global resources: plain UUIDs.
pub type ActionId = uuid::Uuid;

/// Actions per flow at most.
pub const MAX_ACTIONS: usize = 512;
/// The variable `digits_receive` writes and `branch` reads by default.
pub const DIGITS_VARIABLE: &str = "voipbin.call.digits";
/// Variables under this prefix are the platform's; flows cannot set them.
pub const RESERVED_PREFIX: &str = "voipbin.";
/// DTMF keys.
pub const DTMF: &str = "0123456789*#ABCD";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub id: ActionId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_id: Option<ActionId>,
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// The action types of SPEC §8, each with its options. On the wire:
/// `{"type": "talk", "option": {"text": "…"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "option", rename_all = "snake_case")]
pub enum ActionKind {
    Answer(NoOption),
    Talk(Talk),
    Play(Play),
    Sleep(Sleep),
    DigitsReceive(DigitsReceive),
    DigitsSend(DigitsSend),
    VariableSet(VariableSet),
    Branch(Branch),
    ConditionVariable(ConditionVariable),
    Goto(Goto),
    ConferenceJoin(ConferenceJoin),
    Connect(Connect),
    WebhookSend(WebhookSend),
    MessageSend(MessageSend),
    Hangup(Hangup),
    Stop(NoOption),
}

/// The action types, by their wire names.
pub const TYPES: &[&str] = &[
    "answer",
    "talk",
    "play",
    "sleep",
    "digits_receive",
    "digits_send",
    "variable_set",
    "branch",
    "condition_variable",
    "goto",
    "conference_join",
    "connect",
    "webhook_send",
    "message_send",
    "hangup",
    "stop",
];

impl ActionKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Answer(_) => "answer",
            ActionKind::Talk(_) => "talk",
            ActionKind::Play(_) => "play",
            ActionKind::Sleep(_) => "sleep",
            ActionKind::DigitsReceive(_) => "digits_receive",
            ActionKind::DigitsSend(_) => "digits_send",
            ActionKind::VariableSet(_) => "variable_set",
            ActionKind::Branch(_) => "branch",
            ActionKind::ConditionVariable(_) => "condition_variable",
            ActionKind::Goto(_) => "goto",
            ActionKind::ConferenceJoin(_) => "conference_join",
            ActionKind::Connect(_) => "connect",
            ActionKind::WebhookSend(_) => "webhook_send",
            ActionKind::MessageSend(_) => "message_send",
            ActionKind::Hangup(_) => "hangup",
            ActionKind::Stop(_) => "stop",
        }
    }

    /// The actions this one may continue at instead of the next.
    fn targets(&self) -> Vec<(&'static str, ActionId)> {
        match self {
            ActionKind::Branch(b) => b
                .target_ids
                .values()
                .map(|id| ("option.target_ids", *id))
                .chain(b.default_target_id.map(|id| ("option.default_target_id", id)))
                .collect(),
            ActionKind::ConditionVariable(c) => vec![("option.false_target_id", c.false_target_id)],
            ActionKind::Goto(g) => vec![("option.target_id", g.target_id)],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NoOption {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Talk {
    pub text: String,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "en-US".to_owned()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Play {
    pub stream_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sleep {
    /// Milliseconds.
    pub duration: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigitsReceive {
    /// Milliseconds to wait for the digits, in all.
    pub duration: u64,
    /// Keys that end the input (not part of the result), e.g. `#`.
    #[serde(default)]
    pub key: String,
    /// Digits that complete the input; 0 for no limit.
    #[serde(default)]
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigitsSend {
    pub digits: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableSet {
    pub key: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    #[serde(default = "digits_variable")]
    pub variable: String,
    /// Value of the variable → the action to continue at.
    pub target_ids: BTreeMap<String, ActionId>,
    /// Where to continue when no value matches; absent: the next action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target_id: Option<ActionId>,
}

fn digits_variable() -> String {
    DIGITS_VARIABLE.to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<=")]
    Le,
}

impl Condition {
    /// Numbers compare as numbers when both sides are numbers, text as text otherwise.
    pub fn holds(self, left: &str, right: &str) -> bool {
        use std::cmp::Ordering;
        let ordering = match (left.trim().parse::<f64>(), right.trim().parse::<f64>()) {
            (Ok(l), Ok(r)) => l.partial_cmp(&r),
            _ => Some(left.cmp(right)),
        };
        match (self, ordering) {
            (_, None) => self == Condition::Ne,
            (Condition::Eq, Some(o)) => o == Ordering::Equal,
            (Condition::Ne, Some(o)) => o != Ordering::Equal,
            (Condition::Gt, Some(o)) => o == Ordering::Greater,
            (Condition::Lt, Some(o)) => o == Ordering::Less,
            (Condition::Ge, Some(o)) => o != Ordering::Less,
            (Condition::Le, Some(o)) => o != Ordering::Greater,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionVariable {
    pub condition: Condition,
    pub variable: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
    /// Where to continue when the condition does not hold (it continues with the next
    /// action when it does).
    pub false_target_id: ActionId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goto {
    pub target_id: ActionId,
    /// How many times this goto jumps before the flow goes on past it.
    pub loop_count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConferenceJoin {
    pub conference_id: ConferenceId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connect {
    pub source: Address,
    pub destinations: Vec<Address>,
}

crate::text_enum!(
    WebhookMethod {
        Post = "POST",
        Put = "PUT",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSend {
    pub uri: String,
    #[serde(default = "post")]
    pub method: WebhookMethod,
    /// The body: a string is sent as it is, JSON as JSON; absent, the run's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Wait for the answer and set variables from its JSON object.
    #[serde(default)]
    pub sync: bool,
}

fn post() -> WebhookMethod {
    WebhookMethod::Post
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageSend {
    pub source: Address,
    pub destinations: Vec<Address>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hangup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<HangupReason>,
}

/// A string, or a number or boolean taken as its text.
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a string or a number, got {other}"))),
    }
}

/// Why a list of actions was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    /// `None` for a problem with the list as a whole.
    pub index: Option<usize>,
    /// The id the client gave the action, if any.
    pub id: Option<String>,
    pub message: String,
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, &self.id) {
            (Some(i), Some(id)) => write!(f, "actions[{i}] (id {id}): {}", self.message),
            (Some(i), None) => write!(f, "actions[{i}]: {}", self.message),
            (None, _) => write!(f, "actions: {}", self.message),
        }
    }
}

impl std::error::Error for ActionError {}

/// Parses and checks the actions of a flow; see the module documentation.
pub fn parse(raw: &[Value]) -> Result<Vec<Action>, ActionError> {
    if raw.len() > MAX_ACTIONS {
        return Err(ActionError { index: None, id: None, message: format!("at most {MAX_ACTIONS}") });
    }
    let mut actions = Vec::with_capacity(raw.len());
    let mut given: Vec<Option<String>> = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for (index, value) in raw.iter().enumerate() {
        let given_id = value.get("id").filter(|v| !v.is_null()).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let fail = |message: String| ActionError { index: Some(index), id: given_id.clone(), message };
        let action = parse_one(value).map_err(fail)?;
        if !seen.insert(action.id) {
            return Err(fail("id: used by an earlier action".to_owned()));
        }
        check(&action.kind).map_err(fail)?;
        given.push(given_id);
        actions.push(action);
    }
    for (index, action) in actions.iter().enumerate() {
        let jumps = action.next_id.map(|id| ("next_id", id)).into_iter().chain(action.kind.targets());
        for (field, target) in jumps {
            if !seen.contains(&target) {
                return Err(ActionError {
                    index: Some(index),
                    id: given[index].clone(),
                    message: format!("{field}: no action of this flow has the id {target}"),
                });
            }
        }
    }
    Ok(actions)
}

/// Reads actions this module stored; they were checked when they were saved.
pub fn parse_stored(json: &str) -> Result<Vec<Action>, String> {
    let raw: Vec<Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    parse(&raw).map_err(|e| e.to_string())
}

/// The stored form: the actions as JSON, ids included.
pub fn to_json(actions: &[Action]) -> String {
    serde_json::to_string(actions).unwrap_or_else(|_| "[]".to_owned())
}

fn parse_one(value: &Value) -> Result<Action, String> {
    let Value::Object(object) = value else { return Err("an action is a JSON object".to_owned()) };
    let id = match object.get("id") {
        None | Some(Value::Null) => uuid::Uuid::now_v7(),
        Some(v) => uuid_field("id", v)?,
    };
    let next_id = match object.get("next_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(uuid_field("next_id", v)?),
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err("type: expected a string".to_owned()),
        None => return Err("type: required".to_owned()),
    };
    let option = match object.get("option") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err("option: expected a JSON object".to_owned()),
    };
    if !TYPES.contains(&kind.as_str()) {
        return Err(format!("type: unknown action type {kind:?} (one of {})", TYPES.join(", ")));
    }
    let tagged = serde_json::json!({"type": kind, "option": option});
    let kind = ActionKind::deserialize(&tagged).map_err(|e| format!("option: {e}"))?;
    Ok(Action { id, next_id, kind })
}

fn uuid_field(field: &str, value: &Value) -> Result<ActionId, String> {
    value.as_str().and_then(|s| uuid::Uuid::parse_str(s).ok()).ok_or_else(|| format!("{field}: not a UUID"))
}

/// Limits a run relies on, beyond what the types say.
fn check(kind: &ActionKind) -> Result<(), String> {
    fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
        let len = value.chars().count();
        if len < min || len > max {
            return Err(match min {
                0 => format!("option.{field}: at most {max} characters"),
                _ => format!("option.{field}: {min} to {max} characters"),
            });
        }
        Ok(())
    }
    fn count(field: &str, len: usize, max: usize) -> Result<(), String> {
        if len == 0 || len > max {
            return Err(format!("option.{field}: 1 to {max} entries"));
        }
        Ok(())
    }
    fn variable(field: &str, name: &str) -> Result<(), String> {
        text(field, name, 1, 255)?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(format!("option.{field}: names starting with `{RESERVED_PREFIX}` are the platform's"));
        }
        Ok(())
    }
    fn at_most(field: &str, value: u64, max: u64) -> Result<(), String> {
        if value > max {
            return Err(format!("option.{field}: at most {max}"));
        }
        Ok(())
    }
    match kind {
        ActionKind::Answer(_) | ActionKind::Stop(_) | ActionKind::Hangup(_) | ActionKind::ConferenceJoin(_) => Ok(()),
        ActionKind::Talk(t) => text("text", &t.text, 1, 4096).and_then(|()| text("language", &t.language, 1, 16)),
        ActionKind::Play(p) => {
            count("stream_urls", p.stream_urls.len(), 16)?;
            p.stream_urls.iter().try_for_each(|u| text("stream_urls", u, 1, 2048))
        }
        ActionKind::Sleep(s) => at_most("duration", s.duration, 3_600_000),
        ActionKind::DigitsReceive(d) => {
            at_most("duration", d.duration, 600_000)?;
            at_most("length", u64::from(d.length), 128)?;
            if let Some(c) = d.key.chars().find(|c| !DTMF.contains(*c)) {
                return Err(format!("option.key: {c:?} is not a DTMF key ({DTMF})"));
            }
            Ok(())
        }
        ActionKind::DigitsSend(d) => text("digits", &d.digits, 1, 128),
        ActionKind::VariableSet(v) => variable("key", &v.key).and_then(|()| text("value", &v.value, 0, 4096)),
        ActionKind::Branch(b) => {
            text("variable", &b.variable, 1, 255)?;
            if b.target_ids.len() > 64 {
                return Err("option.target_ids: at most 64".to_owned());
            }
            Ok(())
        }
        ActionKind::ConditionVariable(c) => {
            text("variable", &c.variable, 1, 255).and_then(|()| text("value", &c.value, 0, 4096))
        }
        ActionKind::Goto(g) => {
            if g.loop_count == 0 || g.loop_count > 1000 {
                return Err("option.loop_count: 1 to 1000".to_owned());
            }
            Ok(())
        }
        ActionKind::Connect(c) => count("destinations", c.destinations.len(), 8),
        ActionKind::WebhookSend(w) => {
            text("uri", &w.uri, 1, 2048)?;
            let lower = w.uri.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("${")) {
                return Err("option.uri: an http:// or https:// URL".to_owned());
            }
            match &w.data {
                Some(Value::String(s)) => text("data", s, 0, 65_536),
                Some(data) if data.to_string().len() > 65_536 => Err("option.data: at most 64 KiB".to_owned()),
                _ => Ok(()),
            }
        }
        ActionKind::MessageSend(m) => {
            count("destinations", m.destinations.len(), 32)?;
            text("text", &m.text, 1, 1600)
        }
    }
}

/// The addresses of an action, with their field names, for the gateway to check.
pub fn addresses(action: &Action) -> Vec<(String, &Address)> {
    let (source, destinations) = match &action.kind {
        ActionKind::Connect(c) => (&c.source, &c.destinations),
        ActionKind::MessageSend(m) => (&m.source, &m.destinations),
        _ => return Vec::new(),
    };
    std::iter::once(("option.source".to_owned(), source))
        .chain(destinations.iter().enumerate().map(|(i, d)| (format!("option.destinations[{i}]"), d)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(raw: Value) -> String {
        parse(raw.as_array().expect("array")).expect_err("must be refused").to_string()
    }

    #[test]
    fn ids_are_generated_and_kept() {
        let id = uuid::Uuid::now_v7();
        let actions = parse(&[
            json!({"type": "answer"}),
            json!({"id": id.to_string(), "type": "talk", "option": {"text": "hi"}}),
        ])
        .expect("valid");
        assert_eq!(actions[1].id, id);
        assert_ne!(actions[0].id, id);
        assert_eq!(actions[1].kind, ActionKind::Talk(Talk { text: "hi".into(), language: "en-US".into() }));
        let stored = to_json(&actions);
        assert_eq!(parse_stored(&stored).expect("round trip"), actions);
        let wire: Value = serde_json::from_str(&stored).expect("json");
        assert_eq!(wire[1]["type"], "talk");
        assert_eq!(wire[1]["option"]["text"], "hi");
    }

    #[test]
    fn refusals_name_the_action() {
        let id = uuid::Uuid::now_v7().to_string();
        let e = error(json!([{"type": "answer"}, {"id": id, "type": "dance"}]));
        assert!(e.starts_with(&format!("actions[1] (id {id}): type: unknown action type \"dance\"")), "{e}");
        let e = error(json!([{"type": "talk", "option": {}}]));
        assert!(e.starts_with("actions[0]: option: missing field `text`"), "{e}");
        let e = error(json!([{"type": "sleep", "option": {"duration": "long"}}]));
        assert!(e.contains("option: invalid type"), "{e}");
        let e = error(json!([{"id": id, "type": "answer"}, {"id": id, "type": "stop"}]));
        assert!(e.contains("actions[1]") && e.contains("used by an earlier action"), "{e}");
        let nowhere = uuid::Uuid::now_v7();
        let e = error(json!([{"type": "goto", "option": {"target_id": nowhere, "loop_count": 2}}]));
        assert!(e.contains("option.target_id: no action of this flow"), "{e}");
        let e = error(json!([{"type": "answer", "next_id": nowhere}]));
        assert!(e.contains("next_id: no action"), "{e}");
        let e = error(json!([{"type": "branch", "option": {"target_ids": {"1": nowhere}}}]));
        assert!(e.contains("option.target_ids"), "{e}");
        let e = error(json!([{"type": "variable_set", "option": {"key": "voipbin.call.id", "value": "x"}}]));
        assert!(e.contains("option.key"), "{e}");
    }

    #[test]
    fn every_type_parses_by_its_wire_name() {
        let kinds = [
            ActionKind::Answer(NoOption {}),
            ActionKind::Stop(NoOption {}),
            ActionKind::Hangup(Hangup { reason: None }),
            ActionKind::Sleep(Sleep { duration: 1 }),
        ];
        for kind in kinds {
            assert!(TYPES.contains(&kind.type_name()));
            let wire = serde_json::to_value(&kind).expect("serialise");
            assert_eq!(wire["type"], kind.type_name());
        }
        assert_eq!(TYPES.len(), 16);
    }

    #[test]
    fn conditions_compare_numbers_as_numbers() {
        assert!(Condition::Gt.holds("10", "9"));
        assert!(!Condition::Gt.holds("10", "9x"));
        assert!(Condition::Eq.holds("1234", "1234.0"));
        assert!(Condition::Ne.holds("a", "b"));
        assert!(Condition::Le.holds("abc", "abd"));
    }
}
