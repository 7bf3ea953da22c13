//! A run's variables and `${name}` substitution in action options.
//!
//! Names under `voipbin.call.` describe the run's call and `voipbin.activeflow.id` /
//! `voipbin.flow.id` the run itself; they are computed, not stored. Everything else
//! (the call's creation `variables`, `variable_set`, `voipbin.call.digits` from
//! `digits_receive`, answers to a synchronous `webhook_send`) is stored with the run.
//! An unknown name substitutes as the empty string.

use std::collections::BTreeMap;

use callplane_schema::ids::{ActiveflowId, FlowId};
use callplane_schema::models::address::Address;
use callplane_schema::models::call::Call;
use serde_json::Value;

/// Variables a run keeps at most; more `variable_set`s are ignored (and logged).
pub const MAX_VARIABLES: usize = 256;
/// Characters a stored variable value keeps at most.
pub const MAX_VALUE: usize = 4096;

pub struct Variables {
    stored: BTreeMap<String, String>,
    call: Option<Call>,
    activeflow_id: ActiveflowId,
    flow_id: Option<FlowId>,
}

impl Variables {
    pub fn new(stored: BTreeMap<String, String>, activeflow_id: ActiveflowId, flow_id: Option<FlowId>) -> Variables {
        Variables { stored, call: None, activeflow_id, flow_id }
    }

    pub fn set_call(&mut self, call: Call) {
        self.call = Some(call);
    }

    pub fn stored(&self) -> &BTreeMap<String, String> {
        &self.stored
    }

    /// Sets a stored variable; false when the run has as many as it may keep.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        if !self.stored.contains_key(key) && self.stored.len() >= MAX_VARIABLES {
            return false;
        }
        let value: String = value.chars().take(MAX_VALUE).collect();
        self.stored.insert(key.to_owned(), value);
        true
    }

    pub fn get(&self, name: &str) -> String {
        self.builtin(name).or_else(|| self.stored.get(name).cloned()).unwrap_or_default()
    }

    fn builtin(&self, name: &str) -> Option<String> {
        match name {
            "voipbin.activeflow.id" => return Some(self.activeflow_id.to_string()),
            "voipbin.flow.id" => return Some(self.flow_id.as_ref().map(ToString::to_string).unwrap_or_default()),
            _ => {}
        }
        let call = self.call.as_ref()?;
        let field = name.strip_prefix("voipbin.call.")?;
        let address = |address: &Address, part: &str| match part {
            "type" => Some(address.kind.to_string()),
            "target" => Some(address.target.clone()),
            "target_name" => Some(address.target_name.clone()),
            "name" => Some(address.name.clone()),
            _ => None,
        };
        match field {
            "id" => Some(call.id.to_string()),
            "direction" => Some(call.direction.to_string()),
            "status" => Some(call.status.to_string()),
            "customer_id" => Some(call.customer_id.to_string()),
            _ => match field.split_once('.') {
                Some(("source", part)) => address(&call.source, part),
                Some(("destination", part)) => address(&call.destination, part),
                _ => None,
            },
        }
    }

    /// Every variable a run can see, built-in ones included (the default body of a
    /// `webhook_send`).
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut all = self.stored.clone();
        let mut names = vec!["voipbin.activeflow.id", "voipbin.flow.id"];
        if self.call.is_some() {
            names.extend([
                "voipbin.call.id",
                "voipbin.call.direction",
                "voipbin.call.status",
                "voipbin.call.source.type",
                "voipbin.call.source.target",
                "voipbin.call.destination.type",
                "voipbin.call.destination.target",
            ]);
        }
        for name in names {
            all.insert(name.to_owned(), self.get(name));
        }
        all
    }

    /// `text` with each `${name}` replaced by the variable's value.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    out.push_str(&self.get(after[..end].trim()));
                    rest = &after[end + 1..];
                }
                // An unterminated reference stays as it is.
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Substitutes every string inside a JSON value (object keys are left alone).
    pub fn substitute_json(&self, value: &mut Value) {
        match value {
            Value::String(s) if s.contains("${") => *s = self.substitute(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.substitute_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.substitute_json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        let mut vars = Variables::new(BTreeMap::new(), ActiveflowId::new(), None);
        vars.set("name", "Ada");
        assert_eq!(vars.substitute("Hello ${name}, ${ name }!"), "Hello Ada, Ada!");
        assert_eq!(vars.substitute("${missing}|$name|${open"), "|$name|${open");
        assert!(vars.substitute("${voipbin.activeflow.id}").len() == 36);
        let mut json = serde_json::json!({"a": ["${name}", 1], "${name}": "x"});
        vars.substitute_json(&mut json);
        assert_eq!(json, serde_json::json!({"a": ["Ada", 1], "${name}": "x"}));
    }
}
