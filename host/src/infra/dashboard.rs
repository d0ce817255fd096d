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

use std::collections::BTreeMap;

use weir_core::manifest::{DEFAULT_TENANT, DestinationSpec, Manifest, logical_id};

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

/// One graph: `metrics` are CloudWatch's arrays (namespace, name, dimension pairs).
fn widget(title: &str, stat: &str, metrics: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": stat,
            "period": 60,
            "metrics": metrics,
        }
    })
}

fn weir_metric(name: &str, tenant: Option<&str>) -> serde_json::Value {
    let mut m = vec![
        crate::telemetry::METRICS_NAMESPACE,
        name,
        "FunctionName",
        "${WeirFunction}",
    ];
    if let Some(t) = tenant {
        m.extend(["Tenant", t]);
    }
    serde_json::json!(m)
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
                .map(|m| serde_json::json!(["AWS/Lambda", m, "FunctionName", "${WeirFunction}"]))
                .collect(),
        ),
        widget(
            "function: duration (ms)",
            "Maximum",
            vec![serde_json::json!([
                "AWS/Lambda",
                "Duration",
                "FunctionName",
                "${WeirFunction}"
            ])],
        ),
        widget(
            "function: iterator age (ms)",
            "Maximum",
            vec![serde_json::json!([
                "AWS/Lambda",
                "IteratorAge",
                "FunctionName",
                "${WeirFunction}"
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
                        "${EventBus}",
                        "RuleName",
                        format!("${{{rule}}}")
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
                format!("${{{id}DeadLetterQueue.QueueName}}")
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
    let body = serde_json::json!({ "widgets": widgets }).to_string();
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
