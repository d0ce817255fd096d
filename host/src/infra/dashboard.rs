//! The CloudWatch dashboard in `weir infra`'s block, so a new destination or tenant gets
//! its graphs when the block is regenerated.
//!
//! - weir's own EMF metrics (namespace [`crate::telemetry::METRICS_NAMESPACE`], dimension
//!   `FunctionName`): records by outcome, entries and PutEvents calls, plugin time; per
//!   tenant (dimension `Tenant`, when `WEIR_TENANT_METRICS=1`) for every tenant the manifest
//!   names;
//! - the function (`AWS/Lambda`): Errors, Throttles, Duration, IteratorAge;
//! - per destination: its rule's deliveries (`AWS/Events`: Invocations, FailedInvocations,
//!   InvocationAttempts, SuccessfulInvocationAttempts, RetryInvocationAttempts, which counts
//!   the API destination's throttled and failed attempts that are retried,
//!   InvocationsSentToDlq), and its dead-letter queue's depth (`AWS/SQS`
//!   ApproximateNumberOfMessagesVisible).
//!
//! It refers to `WeirFunction` (the function's name: a parameter in the standalone
//! template, the function in the full one), `EventBus` and each destination's rule and
//! queue. A rule's metrics are keyed by its name, the last part of its ARN on a custom bus
//! (`arn:...:rule/BUS/NAME`).
//!
//! The body is JSON inside `Fn::Sub`, and tenant names are manifest text: [`body`] writes
//! every string with each `$` (and everything outside printable ASCII) as a JSON `\u`
//! escape, so the only `${...}` CloudFormation substitutes are the references weir puts
//! there ([`sub`]); CloudWatch reads the escapes back as the tenant's name.

use std::collections::BTreeMap;

use super::logical_id;
use weir_core::manifest::{DEFAULT_TENANT, DestinationSpec, Manifest};

use super::{Node, resource};

/// weir's metrics by outcome, in the order the summary line gives them.
const OUTCOMES: [&str; 6] = [
    "Records",
    "Published",
    "Filtered",
    "Coalesced",
    "DeadLettered",
    "Retried",
];

/// A rule's metrics, what each says about deliveries to its API destination.
const RULE_METRICS: [&str; 6] = [
    "Invocations",
    "FailedInvocations",
    "InvocationAttempts",
    "SuccessfulInvocationAttempts",
    "RetryInvocationAttempts",
    "InvocationsSentToDlq",
];

/// The key of the one-entry object that stands for a `${name}` reference in the body
/// before [`body`] writes it. Manifest text only ever becomes strings, never objects, so
/// it cannot make one.
const SUB_REFERENCE: &str = "weir infra: Fn::Sub reference";

/// `${name}`, substituted by CloudFormation: a parameter, pseudo parameter, variable or
/// resource attribute weir itself names.
fn sub(name: &str) -> serde_json::Value {
    serde_json::json!({ SUB_REFERENCE: name })
}

/// `value` as JSON text for the `Fn::Sub` body: references as `"${name}"`, and in every
/// other string `"`, `\\`, `$` and all but printable ASCII as escapes.
fn body(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_body(value, &mut out);
    out
}

fn write_body(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            if fields.len() == 1
                && let Some(Value::String(name)) = fields.get(SUB_REFERENCE)
            {
                out.push_str("\"${");
                out.push_str(name);
                out.push_str("}\"");
                return;
            }
            out.push('{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_body_string(key, out);
                out.push(':');
                write_body(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_body(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_body_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_body_string(s: &str, out: &mut String) {
    use std::fmt::Write as _;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\u0024"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// One graph: `metrics` are CloudWatch's arrays (namespace, name, dimension pairs).
fn widget(title: &str, stat: &str, metrics: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": sub("AWS::Region"),
            "view": "timeSeries",
            "stat": stat,
            "period": 60,
            "metrics": metrics,
        }
    })
}

fn weir_metric(name: &str, tenant: Option<&str>) -> serde_json::Value {
    let mut m = vec![
        serde_json::json!(crate::telemetry::METRICS_NAMESPACE),
        serde_json::json!(name),
        serde_json::json!("FunctionName"),
        sub("WeirFunction"),
    ];
    if let Some(t) = tenant {
        m.extend([serde_json::json!("Tenant"), serde_json::json!(t)]);
    }
    serde_json::Value::Array(m)
}

/// The dashboard resource.
pub(super) fn dashboard(
    manifest: &Manifest,
    destinations: &BTreeMap<String, DestinationSpec>,
) -> Node {
    let mut widgets = vec![
        widget(
            "weir: records by outcome",
            "Sum",
            OUTCOMES.iter().map(|m| weir_metric(m, None)).collect(),
        ),
        widget(
            "weir: entries and PutEvents calls",
            "Sum",
            [
                "EntriesPublished",
                "PutEventsCalls",
                "PutEventsRetries",
                "ReloadFailures",
            ]
            .iter()
            .map(|m| weir_metric(m, None))
            .collect(),
        ),
        widget(
            "weir: plugin time per batch (ms)",
            "Average",
            vec![weir_metric("PluginTime", None)],
        ),
        widget(
            "function: errors and throttles",
            "Sum",
            ["Errors", "Throttles"]
                .iter()
                .map(|m| serde_json::json!(["AWS/Lambda", m, "FunctionName", sub("WeirFunction")]))
                .collect(),
        ),
        widget(
            "function: duration (ms)",
            "Maximum",
            vec![serde_json::json!([
                "AWS/Lambda",
                "Duration",
                "FunctionName",
                sub("WeirFunction")
            ])],
        ),
        widget(
            "function: iterator age (ms)",
            "Maximum",
            vec![serde_json::json!([
                "AWS/Lambda",
                "IteratorAge",
                "FunctionName",
                sub("WeirFunction")
            ])],
        ),
    ];
    for tenant in manifest.tenants.keys().filter(|t| *t != DEFAULT_TENANT) {
        widgets.push(widget(
            &format!("tenant {tenant} (WEIR_TENANT_METRICS=1)"),
            "Sum",
            OUTCOMES[1..]
                .iter()
                .map(|m| weir_metric(m, Some(tenant)))
                .collect(),
        ));
    }
    let mut variables = Node::map();
    for name in destinations.keys() {
        let id = logical_id(name);
        let rule = format!("{id}RuleName");
        widgets.push(widget(
            &format!("destination {name}: deliveries"),
            "Sum",
            RULE_METRICS
                .iter()
                .map(|m| {
                    serde_json::json!([
                        "AWS/Events",
                        m,
                        "EventBusName",
                        sub("EventBus"),
                        "RuleName",
                        sub(&rule)
                    ])
                })
                .collect(),
        ));
        widgets.push(widget(
            &format!("destination {name}: dead-letter queue"),
            "Maximum",
            vec![serde_json::json!([
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                sub(&format!("{id}DeadLetterQueue.QueueName"))
            ])],
        ));
        variables.put(
            rule,
            Node::Raw(format!("!Select [2, !Split ['/', !GetAtt {id}Rule.Arn]]")),
        );
    }
    // Two graphs a row, in order.
    for (i, w) in widgets.iter_mut().enumerate() {
        w["x"] = serde_json::json!((i % 2) * 12);
        w["y"] = serde_json::json!((i / 2) * 6);
    }
    let body = body(&serde_json::json!({ "widgets": widgets }));
    let mut sub = Node::map();
    sub.put("Fn::Sub", Node::List(vec![Node::str(body), variables]));
    let mut p = Node::map();
    p.put(
        "DashboardName",
        Node::Raw("!Sub '${AWS::StackName}-weir'".into()),
    );
    p.put("DashboardBody", sub);
    resource("AWS::CloudWatch::Dashboard", p)
}
