//! Posts a line to a Slack channel for each change, through an incoming webhook.
//!
//! ```toml
//! config = { title = "Customer", name = "/name", events = ["INSERT", "REMOVE"],
//!            fields = { Email = "/email", City = "/address/city" } }
//! ```
//! The event is for the `slack` destination, detail type `SlackMessage`; its payload is
//! exactly the JSON an incoming webhook takes: `{"text": "..."}` in Slack's mrkdwn.
//! `events` (default: all three) picks the changes that post; `fields` adds one
//! `Label: value` line per attribute the item has, sorted by label.

use weir_plugin_sdk::{Error, Event, Record, Tenant, Value, json};

/// Slack truncates a message's text past 40,000 characters; keep each value well short.
const MAX_VALUE_CHARS: usize = 200;

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let change = record.change.as_str();
    if let Some(events) = tenant.config_value("events") {
        let events = events
            .as_array()
            .ok_or("config.events must be a list such as [\"INSERT\", \"REMOVE\"]")?;
        if !events.iter().any(|e| e.as_str() == Some(change)) {
            return Ok(vec![]);
        }
    }
    let title = tenant.config_str("title").unwrap_or("Item");
    let name_pointer = tenant.config_str("name").unwrap_or("/name");
    let item = record.image().unwrap_or(&record.keys);
    let name = item
        .get(name_pointer)
        .or_else(|| record.keys.get(name_pointer))
        .map(text)
        .unwrap_or_else(|| keys_text(record));
    let verb = match change {
        "INSERT" => "created",
        "MODIFY" => "updated",
        _ if record.removed_by_ttl => "expired",
        _ => "deleted",
    };
    let mut message = format!("*{} {verb}*: {}", escape(title), escape(&name));
    if let Some(fields) = tenant.config_value("fields") {
        let fields = fields
            .as_object()
            .ok_or("config.fields must be a table of label = \"/json/pointer\"")?;
        for (label, pointer) in fields {
            let pointer = pointer
                .as_str()
                .ok_or_else(|| format!("config.fields.{label} must be a JSON pointer string"))?;
            if let Some(v) = item.get(pointer).filter(|v| !v.is_null()) {
                message.push_str(&format!("\n• {}: {}", escape(label), escape(&text(v))));
            }
        }
    }
    Ok(vec![Event::new(
        "slack",
        "SlackMessage",
        json!({ "text": message }),
    )])
}

/// A value as a short line of text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    let s = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > MAX_VALUE_CHARS {
        let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The item's keys as `name=value` pairs, for items without a name.
fn keys_text(record: &Record) -> String {
    let keys = &record.keys;
    keys.names()
        .filter_map(|k| {
            Some(format!(
                "{k}={}",
                text(keys.get(&format!("/{}", k.replace('~', "~0").replace('/', "~1")))?)
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes the three characters Slack's mrkdwn asks to be escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

weir_plugin_sdk::plugin!(transform);
