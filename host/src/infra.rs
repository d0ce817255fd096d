//! `weir infra`: the CloudFormation for every `[destinations.<name>]` of a manifest, so the
//! manifest stays the one place a destination is defined.
//!
//! Each destination becomes a Connection (its auth, the secret as a Secrets Manager
//! dynamic reference), an ApiDestination (endpoint, method, rate limit), an IAM role
//! EventBridge assumes to invoke it, a Rule on the bus matching the routes' sources, the
//! destination's detail types, `metadata.destination` (and `metadata.tenant` for a
//! tenant's own destination), a target sending `InputPath` (the plugin's payload) with the
//! event's `metadata.id` as an idempotency header, a RetryPolicy and a DeadLetterConfig,
//! the dead-letter queue with the policy that lets this rule send to it, and an alarm on
//! that queue's depth.
//!
//! The resources refer to two names they do not define: `EventBus` (the bus name) and
//! `AlarmTopic` (an SNS topic ARN). The standalone template [`template`] declares both as
//! parameters; `examples/deploy/template.yaml` embeds the same block, byte for byte,
//! between [`BEGIN_MARKER`] and [`END_MARKER`], where they are its bus and topic resources
//! (`Ref` gives a bus's name and a topic's ARN, as it gives a parameter's value).
//!
//! Manifest text never changes the template's shape. Every string from the manifest is
//! written as a YAML scalar that reads back as exactly itself in YAML 1.1 and 1.2 readers
//! (anything but printable ASCII is a `\uXXXX` escape in double quotes, so no reader can
//! see a line break, a comment or a tag in it); comments escape it to one line; the
//! dashboard's `Fn::Sub` body never holds a `$` from the manifest. What escaping cannot
//! make harmless, a CloudFormation dynamic reference (`{{resolve:...}}`, which
//! CloudFormation replaces with a secret wherever it stands), is refused by
//! [`template_problems`], which `weir check` and `weir infra` both run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use weir_core::manifest::{DestinationAuth, DestinationSpec, Manifest, SecretRef};

pub mod backfill_state_machine;
mod dashboard;

/// The line before the generated resources, in `weir infra`'s output and in a template
/// that embeds them.
pub const BEGIN_MARKER: &str =
    "  # BEGIN weir infra: generated from the manifest's [destinations]; do not edit by hand";
/// The line after the generated resources.
pub const END_MARKER: &str = "  # END weir infra";

/// A manifest string `weir infra` will not put into a template, and the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// The manifest key, e.g. `destinations.crm.endpoint` (a name that is not a bare TOML
    /// key is quoted and escaped, so the key is always one line of printable ASCII).
    pub key: String,
    /// Why the string cannot go into a template.
    pub reason: &'static str,
}

impl std::fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.key, self.reason)
    }
}

impl std::error::Error for TemplateProblem {}

/// Every problem [`template_problems`] found; `weir infra` prints nothing when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblems(pub Vec<TemplateProblem>);

impl std::fmt::Display for TemplateProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for TemplateProblems {}

const DYNAMIC_REFERENCE: &str = "holds a CloudFormation dynamic reference ('{{resolve:'), which CloudFormation would replace with a secret or parameter value; only weir writes dynamic references (use endpoint_secret or a secret = \"...\" for credentials)";

/// Every manifest string that reaches the template and must not: one problem per key.
/// `weir check` reports them, and [`template`] and [`resources`] refuse to write a
/// template while there are any.
pub fn template_problems(
    manifest: &Manifest,
    destinations: &BTreeMap<String, DestinationSpec>,
) -> Vec<TemplateProblem> {
    let mut strings: Vec<(String, &str)> = vec![("event_bus".to_owned(), &manifest.event_bus)];
    for (i, route) in manifest.routes.iter().enumerate() {
        strings.push((format!("routes[{i}].source"), &route.source));
    }
    for tenant in manifest.tenants.keys() {
        strings.push((format!("tenants.{}", key_segment(tenant)), tenant));
    }
    for (name, d) in destinations {
        let what = format!("destinations.{}", key_segment(name));
        strings.push((what.clone(), name));
        if let Some(endpoint) = &d.endpoint {
            strings.push((format!("{what}.endpoint"), endpoint));
        }
        if let Some(s) = &d.endpoint_secret {
            secret_strings(&format!("{what}.endpoint_secret"), s, &mut strings);
        }
        strings.push((format!("{what}.method"), &d.method));
        for (i, t) in d.detail_types.iter().enumerate() {
            strings.push((format!("{what}.detail_types[{i}]"), t));
        }
        if let Some(t) = &d.tenant {
            strings.push((format!("{what}.tenant"), t));
        }
        if let Some(p) = &d.input_path {
            strings.push((format!("{what}.input_path"), p));
        }
        for (i, p) in d.path_parameters.iter().enumerate() {
            strings.push((format!("{what}.path_parameters[{i}]"), p));
        }
        if let Some(h) = &d.idempotency_header {
            strings.push((format!("{what}.idempotency_header"), h));
        }
        match &d.auth {
            DestinationAuth::OauthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                strings.push((format!("{what}.auth.token_url"), token_url));
                strings.push((format!("{what}.auth.client_id"), client_id));
                secret_strings(
                    &format!("{what}.auth.client_secret"),
                    client_secret,
                    &mut strings,
                );
                if let Some(scope) = scope {
                    strings.push((format!("{what}.auth.scope"), scope));
                }
            }
            DestinationAuth::ApiKey { header, value } => {
                strings.push((format!("{what}.auth.header"), header));
                secret_strings(&format!("{what}.auth.value"), value, &mut strings);
            }
            DestinationAuth::Basic { username, password } => {
                strings.push((format!("{what}.auth.username"), username));
                secret_strings(&format!("{what}.auth.password"), password, &mut strings);
            }
            DestinationAuth::None => {}
        }
    }
    let mut problems: Vec<TemplateProblem> = strings
        .into_iter()
        .filter(|(_, s)| has_dynamic_reference(s))
        .map(|(key, _)| TemplateProblem {
            key,
            reason: DYNAMIC_REFERENCE,
        })
        .collect();
    let mut logical_ids: BTreeMap<String, &str> = BTreeMap::new();
    for name in destinations.keys() {
        if logical_ids.insert(logical_id(name), name).is_some() {
            problems.push(TemplateProblem {
                key: format!("destinations.{}", key_segment(name)),
                reason: SAME_LOGICAL_ID,
            });
        }
    }
    problems
}

const SAME_LOGICAL_ID: &str = "makes the same CloudFormation names as another destination (names differing only in '-', '_' or the case of a first letter collide)";

/// A CloudFormation logical id prefix for a destination name: `crm-webhook` → `CrmWebhook`.
pub(crate) fn logical_id(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'D');
    }
    out
}

fn secret_strings<'a>(what: &str, s: &'a SecretRef, strings: &mut Vec<(String, &'a str)>) {
    strings.push((format!("{what}.secret"), &s.secret));
    if let Some(key) = &s.key {
        strings.push((format!("{what}.key"), key));
    }
}

/// Whether `s` holds what CloudFormation could read as a dynamic reference: `{{`, any
/// whitespace, then `resolve` in any case (stricter than CloudFormation's own syntax, so
/// no variant it accepts slips through).
fn has_dynamic_reference(s: &str) -> bool {
    s.match_indices("{{").any(|(i, _)| {
        let rest = s[i + 2..].trim_start();
        rest.get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("resolve"))
    })
}

/// A manifest key's part for a name: bare when TOML allows it, else a quoted TOML string
/// with everything but printable ASCII escaped, so a problem's key is one printable line.
fn key_segment(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        name.to_owned()
    } else {
        double_quoted(name)
    }
}

/// The whole standalone template: parameters for the bus and the alarm topic, then the
/// generated resources between the markers; refused while [`template_problems`] finds any.
pub fn template(
    manifest: &Manifest,
    destinations: &BTreeMap<String, DestinationSpec>,
) -> Result<String, TemplateProblems> {
    let block = resources(manifest, destinations)?;
    let mut out = String::new();
    out.push_str("# The API destinations of a weir manifest, printed by `weir infra`.\n");
    out.push_str("AWSTemplateFormatVersion: '2010-09-09'\n");
    let _ = writeln!(
        out,
        "Description: {}",
        scalar(&format!(
            "weir destinations for event bus {}: {}",
            manifest.event_bus,
            destinations.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    );
    out.push_str("Parameters:\n");
    out.push_str("  EventBus:\n    Type: String\n");
    let _ = writeln!(out, "    Default: {}", scalar(&manifest.event_bus));
    out.push_str(
        "    Description: The name of the bus weir publishes to (the manifest's event_bus).\n",
    );
    out.push_str("  AlarmTopic:\n    Type: String\n");
    out.push_str(
        "    Description: The ARN of the SNS topic the dead-letter queue alarms notify.\n",
    );
    out.push_str("  WeirFunction:\n    Type: String\n    Default: ''\n");
    out.push_str(
        "    Description: The weir function's name, which the backfill state machine invokes.\n",
    );
    out.push_str("  BackfillExportBucket:\n    Type: String\n    Default: ''\n");
    out.push_str("    Description: The bucket of DynamoDB exports to backfill from; empty (or no WeirFunction) leaves the backfill state machine out.\n");
    out.push_str("Conditions:\n  HasBackfill: !And\n    - !Not [!Equals [!Ref WeirFunction, '']]\n    - !Not [!Equals [!Ref BackfillExportBucket, '']]\n");
    out.push_str("Resources:\n");
    out.push_str(&block);
    Ok(out)
}

/// EventBridge's default rules per event bus (adjustable in Service Quotas).
pub const DEFAULT_RULES_PER_BUS: usize = 300;
/// The rules-per-bus default in the Regions where it is lower.
pub const LOWER_RULES_PER_BUS: (usize, &str) = (100, "af-south-1 and eu-south-1");
/// EventBridge's default API destinations, and connections, per account and Region
/// (each adjustable in Service Quotas).
pub const DEFAULT_API_DESTINATIONS_PER_REGION: usize = 3_000;

/// The way around a quota that a destination per tenant meets.
const QUOTA_WAY_AROUND: &str = "one destination for all tenants whose endpoint path carries the tenant (endpoint = \"https://.../*\", path_parameters = [\"$.detail.metadata.tenant\"]), or a dispatcher (a webhook service) behind one destination, or a quota increase in Service Quotas (the quota is adjustable)";

/// Warnings (not errors) for a manifest whose destinations would pass EventBridge's
/// default quotas: each destination is a rule on the bus, an API destination and a
/// connection. A SaaS with a webhook per tenant meets the rule quota at 300 tenants, and
/// the template would fail to deploy there. Each warning names the quota and the way
/// around it. `weir check` and `weir infra` print them.
pub fn quota_warnings(destinations: &BTreeMap<String, DestinationSpec>) -> Vec<String> {
    let n = destinations.len();
    let mut warnings = Vec::new();
    let (lower, lower_regions) = LOWER_RULES_PER_BUS;
    if n > DEFAULT_RULES_PER_BUS {
        warnings.push(format!(
            "{n} destinations make {n} rules on the event bus: more than EventBridge's default quota of {DEFAULT_RULES_PER_BUS} rules per event bus ({lower} in {lower_regions}), before the bus's other rules; instead: {QUOTA_WAY_AROUND}"
        ));
    } else if n > lower {
        warnings.push(format!(
            "{n} destinations make {n} rules on the event bus: more than EventBridge's default quota of {lower} rules per event bus in {lower_regions} ({DEFAULT_RULES_PER_BUS} elsewhere); there: {QUOTA_WAY_AROUND}"
        ));
    }
    if n > DEFAULT_API_DESTINATIONS_PER_REGION {
        warnings.push(format!(
            "{n} destinations make {n} API destinations and {n} connections: more than EventBridge's default quotas of {DEFAULT_API_DESTINATIONS_PER_REGION} API destinations and {DEFAULT_API_DESTINATIONS_PER_REGION} connections per account and Region, before any others there; instead: {QUOTA_WAY_AROUND}"
        ));
    }
    warnings
}

/// The generated resources, markers included, indented to sit under `Resources:`;
/// refused while [`template_problems`] finds any.
pub fn resources(
    manifest: &Manifest,
    destinations: &BTreeMap<String, DestinationSpec>,
) -> Result<String, TemplateProblems> {
    let problems = template_problems(manifest, destinations);
    if !problems.is_empty() {
        return Err(TemplateProblems(problems));
    }
    let mut out = String::new();
    out.push_str(BEGIN_MARKER);
    out.push('\n');
    let sources = manifest.sources();
    for (name, d) in destinations {
        let id = logical_id(name);
        let _ = writeln!(
            out,
            "  # {}",
            comment(&format!(
                "{name}: {} {} for {}",
                d.method,
                d.detail_types.join(", "),
                d.tenant
                    .as_deref()
                    .map_or("every tenant".to_owned(), |t| format!("tenant {t}"))
            ))
        );
        let mut resources = Node::map();
        resources.put(format!("{id}Connection"), connection(name, d));
        resources.put(format!("{id}ApiDestination"), api_destination(name, d, &id));
        resources.put(format!("{id}InvokeRole"), invoke_role(&id));
        resources.put(format!("{id}Rule"), rule(name, d, &id, &sources));
        resources.put(format!("{id}DeadLetterQueue"), dead_letter_queue());
        resources.put(format!("{id}DeadLetterQueuePolicy"), queue_policy(&id));
        resources.put(format!("{id}DeadLetterAlarm"), alarm(name, &id));
        resources.write(&mut out, 1);
    }
    let pacing = backfill_state_machine::pacing(destinations);
    let _ = writeln!(
        out,
        "  # backfill: a Distributed Map over an export's data files, {} task(s) at once, {}",
        pacing.max_concurrency,
        pacing.task_rate.map_or("unpaced".to_owned(), |r| format!(
            "each at most {r} entries/s"
        ))
    );
    out.push_str("  # the dashboard: weir's metrics, the function's, and each destination's\n");
    let mut resources = Node::map();
    resources.put(
        "WeirDashboard",
        dashboard::dashboard(manifest, destinations),
    );
    resources.write(&mut out, 1);
    let mut resources = Node::map();
    resources.put("WeirBackfillRole", backfill_state_machine::role());
    resources.put(
        "WeirBackfill",
        backfill_state_machine::state_machine(pacing),
    );
    resources.write(&mut out, 1);
    out.push_str(END_MARKER);
    out.push('\n');
    Ok(out)
}

/// `s` as the text of a one-line YAML comment: printable ASCII as is, anything else
/// (line breaks of any YAML version among them) as a `\u{...}` escape.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c.to_string()
            } else {
                format!("\\u{{{:04x}}}", u32::from(c))
            }
        })
        .collect()
}

fn resource(kind: &str, properties: Node) -> Node {
    let mut r = Node::map();
    r.put("Type", Node::str(kind));
    r.put("Properties", properties);
    r
}

fn secret(s: &SecretRef) -> Node {
    Node::str(match &s.key {
        Some(key) => format!(
            "{{{{resolve:secretsmanager:{}:SecretString:{key}}}}}",
            s.secret
        ),
        None => format!("{{{{resolve:secretsmanager:{}}}}}", s.secret),
    })
}

fn connection(name: &str, d: &DestinationSpec) -> Node {
    let mut p = Node::map();
    p.put("Description", Node::str(format!("weir destination {name}")));
    let mut auth = Node::map();
    let kind = match &d.auth {
        DestinationAuth::OauthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } => {
            let mut oauth = Node::map();
            oauth.put("AuthorizationEndpoint", Node::str(token_url));
            oauth.put("HttpMethod", Node::str("POST"));
            let mut client = Node::map();
            client.put("ClientID", Node::str(client_id));
            client.put("ClientSecret", secret(client_secret));
            oauth.put("ClientParameters", client);
            let mut body = vec![key_value("grant_type", Node::str("client_credentials"))];
            if let Some(scope) = scope {
                body.push(key_value("scope", Node::str(scope)));
            }
            let mut http = Node::map();
            http.put("BodyParameters", Node::List(body));
            oauth.put("OAuthHttpParameters", http);
            auth.put("OAuthParameters", oauth);
            "OAUTH_CLIENT_CREDENTIALS"
        }
        DestinationAuth::ApiKey { header, value } => {
            let mut key = Node::map();
            key.put("ApiKeyName", Node::str(header));
            key.put("ApiKeyValue", secret(value));
            auth.put("ApiKeyAuthParameters", key);
            "API_KEY"
        }
        DestinationAuth::Basic { username, password } => {
            let mut basic = Node::map();
            basic.put("Username", Node::str(username));
            basic.put("Password", secret(password));
            auth.put("BasicAuthParameters", basic);
            "BASIC"
        }
        DestinationAuth::None => {
            // EventBridge has no unauthenticated connection: send a harmless named header.
            let mut key = Node::map();
            key.put("ApiKeyName", Node::str("X-Weir-Destination"));
            key.put("ApiKeyValue", Node::str(name));
            auth.put("ApiKeyAuthParameters", key);
            "API_KEY"
        }
    };
    p.put("AuthorizationType", Node::str(kind));
    p.put("AuthParameters", auth);
    resource("AWS::Events::Connection", p)
}

fn key_value(key: &str, value: Node) -> Node {
    let mut kv = Node::map();
    kv.put("Key", Node::str(key));
    kv.put("Value", value);
    kv
}

fn api_destination(name: &str, d: &DestinationSpec, id: &str) -> Node {
    let mut p = Node::map();
    p.put("Description", Node::str(format!("weir destination {name}")));
    p.put(
        "ConnectionArn",
        Node::get_att(&format!("{id}Connection.Arn")),
    );
    let endpoint = match (&d.endpoint, &d.endpoint_secret) {
        (_, Some(s)) => secret(s),
        (Some(url), None) => Node::str(url),
        (None, None) => Node::str(""),
    };
    p.put("InvocationEndpoint", endpoint);
    p.put("HttpMethod", Node::str(&d.method));
    if let Some(rate) = d.rate_limit_per_second {
        p.put("InvocationRateLimitPerSecond", Node::Raw(rate.to_string()));
    }
    resource("AWS::Events::ApiDestination", p)
}

fn invoke_role(id: &str) -> Node {
    let mut statement = Node::map();
    statement.put("Effect", Node::str("Allow"));
    let mut principal = Node::map();
    principal.put("Service", Node::str("events.amazonaws.com"));
    statement.put("Principal", principal);
    statement.put("Action", Node::str("sts:AssumeRole"));
    let mut trust = Node::map();
    trust.put("Version", Node::str("2012-10-17"));
    trust.put("Statement", Node::List(vec![statement]));
    let mut allow = Node::map();
    allow.put("Effect", Node::str("Allow"));
    allow.put("Action", Node::str("events:InvokeApiDestination"));
    allow.put(
        "Resource",
        Node::get_att(&format!("{id}ApiDestination.Arn")),
    );
    let mut document = Node::map();
    document.put("Version", Node::str("2012-10-17"));
    document.put("Statement", Node::List(vec![allow]));
    let mut policy = Node::map();
    policy.put("PolicyName", Node::str("invoke-api-destination"));
    policy.put("PolicyDocument", document);
    let mut p = Node::map();
    p.put("AssumeRolePolicyDocument", trust);
    p.put("Policies", Node::List(vec![policy]));
    resource("AWS::IAM::Role", p)
}

fn rule(name: &str, d: &DestinationSpec, id: &str, sources: &[&str]) -> Node {
    let mut metadata = Node::map();
    metadata.put("destination", Node::List(vec![Node::str(name)]));
    if let Some(t) = &d.tenant {
        metadata.put("tenant", Node::List(vec![Node::str(t)]));
    }
    let mut detail = Node::map();
    detail.put("metadata", metadata);
    let mut pattern = Node::map();
    pattern.put(
        "source",
        Node::List(sources.iter().map(|s| Node::str(*s)).collect()),
    );
    pattern.put(
        "detail-type",
        Node::List(d.detail_types.iter().map(Node::str).collect()),
    );
    pattern.put("detail", detail);

    let mut target = Node::map();
    target.put("Id", Node::str(name));
    target.put("Arn", Node::get_att(&format!("{id}ApiDestination.Arn")));
    target.put("RoleArn", Node::get_att(&format!("{id}InvokeRole.Arn")));
    target.put("InputPath", Node::str(d.input_path()));
    let mut http = Node::map();
    if let Some(header) = d.idempotency_header() {
        let mut headers = Node::map();
        headers.put(header, Node::str("$.detail.metadata.id"));
        http.put("HeaderParameters", headers);
    }
    if !d.path_parameters.is_empty() {
        http.put(
            "PathParameterValues",
            Node::List(d.path_parameters.iter().map(Node::str).collect()),
        );
    }
    if !http.is_empty() {
        target.put("HttpParameters", http);
    }
    let mut retry = Node::map();
    retry.put(
        "MaximumRetryAttempts",
        Node::Raw(d.retry.attempts.to_string()),
    );
    retry.put(
        "MaximumEventAgeInSeconds",
        Node::Raw(d.retry.max_age_secs.to_string()),
    );
    target.put("RetryPolicy", retry);
    let mut dlq = Node::map();
    dlq.put("Arn", Node::get_att(&format!("{id}DeadLetterQueue.Arn")));
    target.put("DeadLetterConfig", dlq);

    let mut p = Node::map();
    p.put(
        "Description",
        Node::str(format!("weir events for destination {name}")),
    );
    p.put("EventBusName", Node::reference("EventBus"));
    p.put("EventPattern", pattern);
    p.put("State", Node::str("ENABLED"));
    p.put("Targets", Node::List(vec![target]));
    resource("AWS::Events::Rule", p)
}

fn dead_letter_queue() -> Node {
    let mut p = Node::map();
    // 14 days, SQS's longest: time to fix the endpoint and redrive.
    p.put("MessageRetentionPeriod", Node::Raw("1209600".into()));
    p.put("SqsManagedSseEnabled", Node::Raw("true".into()));
    resource("AWS::SQS::Queue", p)
}

fn queue_policy(id: &str) -> Node {
    let mut principal = Node::map();
    principal.put("Service", Node::str("events.amazonaws.com"));
    let mut arn = Node::map();
    arn.put("aws:SourceArn", Node::get_att(&format!("{id}Rule.Arn")));
    let mut condition = Node::map();
    condition.put("ArnEquals", arn);
    let mut statement = Node::map();
    statement.put("Effect", Node::str("Allow"));
    statement.put("Principal", principal);
    statement.put("Action", Node::str("sqs:SendMessage"));
    statement.put(
        "Resource",
        Node::get_att(&format!("{id}DeadLetterQueue.Arn")),
    );
    statement.put("Condition", condition);
    let mut document = Node::map();
    document.put("Version", Node::str("2012-10-17"));
    document.put("Statement", Node::List(vec![statement]));
    let mut p = Node::map();
    p.put(
        "Queues",
        Node::List(vec![Node::reference(&format!("{id}DeadLetterQueue"))]),
    );
    p.put("PolicyDocument", document);
    resource("AWS::SQS::QueuePolicy", p)
}

fn alarm(name: &str, id: &str) -> Node {
    let mut dimension = Node::map();
    dimension.put("Name", Node::str("QueueName"));
    dimension.put(
        "Value",
        Node::get_att(&format!("{id}DeadLetterQueue.QueueName")),
    );
    let mut p = Node::map();
    p.put(
        "AlarmDescription",
        Node::str(format!(
            "Events EventBridge could not deliver to destination {name} (retries exhausted or refused)"
        )),
    );
    p.put("Namespace", Node::str("AWS/SQS"));
    p.put(
        "MetricName",
        Node::str("ApproximateNumberOfMessagesVisible"),
    );
    p.put("Dimensions", Node::List(vec![dimension]));
    p.put("Statistic", Node::str("Maximum"));
    p.put("Period", Node::Raw("300".into()));
    p.put("EvaluationPeriods", Node::Raw("1".into()));
    p.put("Threshold", Node::Raw("0".into()));
    p.put("ComparisonOperator", Node::str("GreaterThanThreshold"));
    p.put("TreatMissingData", Node::str("notBreaching"));
    p.put(
        "AlarmActions",
        Node::List(vec![Node::reference("AlarmTopic")]),
    );
    resource("AWS::CloudWatch::Alarm", p)
}

/// A YAML value, written in block style with keys in insertion order.
#[derive(Debug, Clone)]
enum Node {
    /// A string, quoted when YAML would read it as anything else.
    Str(String),
    /// Written as is: numbers, booleans, `!Ref X`, `!GetAtt X.Y`.
    Raw(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn map() -> Node {
        Node::Map(Vec::new())
    }

    fn str(s: impl AsRef<str>) -> Node {
        Node::Str(s.as_ref().to_owned())
    }

    fn reference(name: &str) -> Node {
        Node::Raw(format!("!Ref {name}"))
    }

    fn get_att(path: &str) -> Node {
        Node::Raw(format!("!GetAtt {path}"))
    }

    fn put(&mut self, key: impl Into<String>, value: Node) {
        if let Node::Map(entries) = self {
            entries.push((key.into(), value));
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Node::Map(m) => m.is_empty(),
            Node::List(l) => l.is_empty(),
            _ => false,
        }
    }

    /// Writes a map's or list's entries at `depth` (two spaces each).
    fn write(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        match self {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let _ = write!(out, "{indent}{}:", scalar(key));
                    value.write_value(out, depth);
                }
            }
            Node::List(items) => {
                for item in items {
                    let _ = write!(out, "{indent}-");
                    match item {
                        Node::Map(entries) if !entries.is_empty() => {
                            // The first key sits on the dash's line, the rest under it.
                            let mut first = true;
                            for (key, value) in entries {
                                if first {
                                    let _ = write!(out, " {}:", scalar(key));
                                    first = false;
                                } else {
                                    let _ = write!(out, "{indent}  {}:", scalar(key));
                                }
                                value.write_value(out, depth + 1);
                            }
                        }
                        other => other.write_value(out, depth),
                    }
                }
            }
            Node::Str(_) | Node::Raw(_) => self.write_value(out, depth),
        }
    }

    /// Writes the rest of a line after `key:` or `-`, and any nested block under it.
    fn write_value(&self, out: &mut String, depth: usize) {
        match self {
            Node::Str(s) => {
                let _ = writeln!(out, " {}", scalar(s));
            }
            Node::Raw(r) => {
                let _ = writeln!(out, " {r}");
            }
            Node::Map(m) if m.is_empty() => out.push_str(" {}\n"),
            Node::List(l) if l.is_empty() => out.push_str(" []\n"),
            nested => {
                out.push('\n');
                nested.write(out, depth + 1);
            }
        }
    }
}

/// `s` as a YAML scalar that reads back as exactly the string `s`, in YAML 1.1 readers
/// (PyYAML, libyaml, cfn-lint's loader) as in 1.2 ones: plain when that is unambiguous,
/// single-quoted for other printable ASCII, double-quoted with escapes for anything else.
fn scalar(s: &str) -> String {
    if !s.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        double_quoted(s)
    } else if is_plain_safe(s) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// `s` double-quoted, in printable ASCII only: `"` and `\` escaped, every other character
/// outside printable ASCII as `\uXXXX` (or `\UXXXXXXXX` beyond the first plane), so no
/// YAML reader sees a line break (`\n`, `\r`, U+0085, U+2028, U+2029), a byte-order mark
/// or a character it refuses.
fn double_quoted(s: &str) -> String {
    weir_core::text::ascii_quoted(s)
}

fn is_plain_safe(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '$' || first == '/') {
        return false;
    }
    if WORDS.contains(&s.to_ascii_lowercase().as_str()) || s.parse::<f64>().is_ok() {
        return false;
    }
    let bytes = s.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| {
        let next = bytes.get(i + 1);
        b.is_ascii_alphanumeric()
            || b"_-./$@+=*(),".contains(b)
            || (*b == b':' && next.is_some_and(|n| *n != b' '))
            || (*b == b' ' && next.is_some_and(|n| *n != b'#' && *n != b' '))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::location::Location;

    const MANIFEST: &str = r#"
event_bus = "bus"
[plugins.p]
path = "p.wasm"
[[routes]]
table = "T"
source = "weir.t"
tenant = { attribute = "tenantId" }
[tenants.acme]
plugin = "p"
[tenants.globex]
plugin = "p"
destinations = ["hook"]
[destinations.crm-sync]
endpoint = "https://example.com/accounts/*"
method = "PATCH"
path_parameters = ["$.detail.payload.id"]
input_path = "$.detail.payload.body"
tenant = "acme"
detail_types = ["Upsert"]
rate_limit_per_second = 10
retry = { attempts = 3, max_age_secs = 600 }
auth = { type = "oauth_client_credentials", token_url = "https://example.com/token", client_id = "abc", client_secret = { secret = "crm", key = "secret" } }
[destinations.hook]
endpoint_secret = { secret = "hook-url" }
method = "POST"
detail_types = ["Changed"]
auth = { type = "none" }
"#;

    fn parsed() -> (Manifest, BTreeMap<String, DestinationSpec>) {
        Manifest::parse_with_destinations(MANIFEST, Location::File("m.toml".into()))
            .expect("parses")
    }

    /// A manifest with `n` webhook destinations, one per tenant.
    fn webhooks(n: usize) -> BTreeMap<String, DestinationSpec> {
        let mut text = String::from(
            "event_bus = \"bus\"\n[plugins.p]\npath = \"p.wasm\"\n[[routes]]\ntable = \"T\"\nsource = \"s\"\ntenant = { attribute = \"t\" }\n[tenants.default]\nplugin = \"p\"\n",
        );
        for i in 0..n {
            text.push_str(&format!(
                "[destinations.hook-{i}]\nendpoint = \"https://example.com/t{i}\"\nmethod = \"POST\"\ndetail_types = [\"Changed\"]\nauth = {{ type = \"none\" }}\n"
            ));
        }
        Manifest::parse_with_destinations(&text, Location::File("m.toml".into()))
            .expect("parses")
            .1
    }

    #[test]
    fn three_hundred_and_one_webhooks_pass_the_rules_per_bus_quota_with_a_way_around() {
        let destinations = webhooks(301);
        assert_eq!(destinations.len(), 301);
        let warnings = quota_warnings(&destinations);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(
            w.contains("301 rules") && w.contains("300 rules per event bus"),
            "{w}"
        );
        assert!(w.contains("af-south-1") && w.contains("eu-south-1"), "{w}");
        assert!(
            w.contains("$.detail.metadata.tenant") && w.contains("quota increase"),
            "{w}"
        );
        let lower = quota_warnings(&webhooks(101));
        assert!(
            lower.len() == 1 && lower[0].contains("100 rules per event bus in af-south-1"),
            "{lower:?}"
        );
        assert!(quota_warnings(&webhooks(100)).is_empty());
        assert!(quota_warnings(&parsed().1).is_empty());
    }

    #[test]
    fn logical_ids_are_camel_case() {
        assert_eq!(logical_id("crm-webhook"), "CrmWebhook");
        assert_eq!(logical_id("slack"), "Slack");
        assert_eq!(logical_id("a_b-c"), "ABC");
        assert_eq!(logical_id("1st"), "D1st");
    }

    #[test]
    fn destinations_with_the_same_logical_id_are_a_template_problem() {
        let text = MANIFEST.replace("[destinations.hook]", "[destinations.Hook]")
            + "[destinations.hook]\nendpoint_secret = { secret = \"other\" }\nmethod = \"POST\"\ndetail_types = [\"Changed\"]\nauth = { type = \"none\" }\n";
        let (m, destinations) =
            Manifest::parse_with_destinations(&text, Location::File("m.toml".into()))
                .expect("parses: the collision is CloudFormation's, not the manifest's");
        let problems = template_problems(&m, &destinations);
        assert_eq!(
            problems,
            [TemplateProblem {
                key: "destinations.hook".to_owned(),
                reason: SAME_LOGICAL_ID,
            }]
        );
        assert!(template_problems(&parsed().0, &parsed().1).is_empty());
    }

    #[test]
    fn scalars_quote_what_yaml_would_misread() {
        assert_eq!(scalar("PATCH"), "PATCH");
        assert_eq!(scalar("https://x.example/a/*"), "https://x.example/a/*");
        assert_eq!(scalar("*alias"), "'*alias'");
        assert_eq!(scalar("trailing "), "'trailing '");
        assert_eq!(scalar("$.detail.payload"), "$.detail.payload");
        assert_eq!(scalar("true"), "'true'");
        assert_eq!(scalar("2012-10-17"), "'2012-10-17'");
        assert_eq!(scalar("10"), "'10'");
        assert_eq!(scalar("it's: odd"), "'it''s: odd'");
        assert_eq!(scalar("{{resolve:x}}"), "'{{resolve:x}}'");
        assert_eq!(scalar("a\nb"), "\"a\\u000Ab\"");
        assert_eq!(scalar("aws:SourceArn"), "aws:SourceArn");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("a:"), "'a:'");
        // Line breaks of YAML 1.1 readers, a byte-order mark, beyond the first plane.
        assert_eq!(
            scalar("a\u{85}\u{2028}\u{2029}\u{feff}\u{1F600}\"\\"),
            "\"a\\u0085\\u2028\\u2029\\uFEFF\\U0001F600\\\"\\\\\""
        );
        assert_eq!(comment("a\nb\u{2028}c"), "a\\u{000a}b\\u{2028}c");
    }

    #[test]
    fn dynamic_references_are_found_in_any_spelling() {
        for s in ["{{resolve:ssm:x}}", "a{{ Resolve:x", "{{\tRESOLVE"] {
            assert!(has_dynamic_reference(s), "{s}");
        }
        for s in ["{resolve:x}", "{{resolv", "{{ x resolve", "resolve:{{"] {
            assert!(!has_dynamic_reference(s), "{s}");
        }
        assert_eq!(key_segment("crm-sync"), "crm-sync");
        assert_eq!(key_segment("a b\n"), "\"a b\\u000A\"");
    }

    #[test]
    fn each_destination_gets_its_resources() {
        let (m, d) = parsed();
        let out = template(&m, &d).expect("no problems");
        for part in [
            "  CrmSyncConnection:\n    Type: AWS::Events::Connection\n",
            "AuthorizationType: OAUTH_CLIENT_CREDENTIALS",
            "ClientSecret: '{{resolve:secretsmanager:crm:SecretString:secret}}'",
            "InvocationEndpoint: https://example.com/accounts/*",
            "InvocationRateLimitPerSecond: 10",
            "HttpMethod: PATCH",
            "InputPath: $.detail.payload.body",
            "Idempotency-Key: $.detail.metadata.id",
            "PathParameterValues:\n              - $.detail.payload.id",
            "MaximumRetryAttempts: 3",
            "MaximumEventAgeInSeconds: 600",
            "tenant:\n              - acme",
            "destination:\n              - crm-sync",
            "EventBusName: !Ref EventBus",
            "InvocationEndpoint: '{{resolve:secretsmanager:hook-url}}'",
            "ApiKeyName: X-Weir-Destination",
            "aws:SourceArn: !GetAtt HookRule.Arn",
            "AlarmActions:\n        - !Ref AlarmTopic",
        ] {
            assert!(out.contains(part), "{out}\nlacks: {part}");
        }
        let hook_rule = &out[out.find("  HookRule:").expect("hook rule")..];
        let hook_rule = &hook_rule[..hook_rule.find("  HookDeadLetterQueue:").expect("next")];
        assert!(!hook_rule.contains("tenant:"), "{hook_rule}");
        assert_eq!(Ok(out), template(&m, &d), "deterministic");
    }

    #[test]
    fn defined_destinations_become_allow_lists() {
        let (m, _) = parsed();
        let acme = &m.tenants["acme"];
        assert!(acme.allows("crm-sync") && acme.allows("hook") && !acme.allows("other"));
        let globex = &m.tenants["globex"];
        assert!(globex.allows("hook") && !globex.allows("crm-sync"));
    }

    #[test]
    fn destination_problems_are_reported_together() {
        let text = MANIFEST
            .replace(
                "\"https://example.com/token\"",
                "\"http://example.com/token\"",
            )
            .replace("attempts = 3", "attempts = 186")
            .replace("max_age_secs = 600", "max_age_secs = 30")
            .replace("method = \"POST\"", "method = \"TRACE\"")
            .replace(
                "destinations = [\"hook\"]",
                "destinations = [\"hook\", \"crm-sync\", \"nowhere\"]",
            )
            .replace("tenant = \"acme\"", "tenant = \"initech\"")
            .replace(
                "path_parameters = [\"$.detail.payload.id\"]",
                "path_parameters = []",
            )
            + "[destinations.broken]\nmethod = \"POST\"\ndetail_types = []\nauth = { type = \"api_key\", header = \"Authorization\", value = { secret = \"k\" } }\n";
        let err = Manifest::parse(&text, Location::File("m.toml".into())).expect_err("invalid");
        let msg = err.to_string();
        for part in [
            "destinations.crm-sync.auth.token_url: must be an https:// URL",
            "destinations.crm-sync.retry.attempts: must be 0 to 185, found 186",
            "destinations.crm-sync.retry.max_age_secs: must be 60 to 86400, found 30",
            "destinations.hook.method: must be one of",
            "tenants.globex.destinations: names \"nowhere\", which is not in [destinations]",
            "destinations.crm-sync.tenant: names \"initech\"",
            "destinations.crm-sync.path_parameters: has 0 values but the endpoint has 1 '*'",
            "destinations.broken: must give exactly one of endpoint",
            "destinations.broken.detail_types: must name at least one",
            "destinations.broken.auth.header: is not an HTTP header name",
        ] {
            assert!(msg.contains(part), "{msg}\nlacks: {part}");
        }
    }
}
