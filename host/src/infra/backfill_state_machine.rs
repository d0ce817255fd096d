//! The backfill state machine in `weir infra`'s block: a Step Functions Distributed Map over
//! a DynamoDB export's `manifest-files.json` (one map item per data file), invoking the
//! weir function with a backfill task (`weir::lambda::BackfillTask`) until each file is
//! done. It exists only under the condition `HasBackfill` (an export bucket was named).
//!
//! How fast: every item may make an entry for the slowest destination, so the whole map
//! holds at most that destination's `rate_limit_per_second` (an API destination fed
//! faster keeps the excess in retries, and expires it to its dead-letter queue after
//! `max_age_secs`). `MaxConcurrency` is as few tasks as can reach that rate at
//! [`TASK_RATE`] each, and each task paces itself to its share. Without a rate limit,
//! [`UNPACED_CONCURRENCY`] tasks run unpaced.
//!
//! Start an execution with
//! `{"bucket": B, "manifestFilesKey": "P/AWSDynamoDB/ID/manifest-files.json",
//!   "export": "s3://B/P/AWSDynamoDB/ID", "run": NAME, "keys": [KEY, ...]}`;
//! each file's counts go to `s3://B/weir-backfill-results/`.

use std::collections::BTreeMap;

use weir_core::manifest::DestinationSpec;

use super::{Node, resource};

/// Entries per second one task holds comfortably: one process publishes about 14,000
/// items/s to a zero-latency endpoint (BENCHMARKS.md), and PutEvents' own quota is shared
/// with the stream; 500/s leaves both far from their limits.
pub const TASK_RATE: u32 = 500;
/// Concurrent tasks when no destination has a rate limit.
pub const UNPACED_CONCURRENCY: u32 = 10;
/// Never more tasks than this at once (Lambda's concurrency is shared with the stream).
pub const MAX_CONCURRENCY: u32 = 100;

/// How a backfill map runs: tasks at once, and each task's pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// The map's `MaxConcurrency`.
    pub max_concurrency: u32,
    /// Entries per second per task, if paced.
    pub task_rate: Option<f64>,
}

/// The pacing for the slowest of `destinations`.
pub fn pacing(destinations: &BTreeMap<String, DestinationSpec>) -> Pacing {
    match destinations
        .values()
        .filter_map(|d| d.rate_limit_per_second)
        .min()
    {
        None => Pacing {
            max_concurrency: UNPACED_CONCURRENCY,
            task_rate: None,
        },
        Some(rate) => {
            let n = rate.div_ceil(TASK_RATE).clamp(1, MAX_CONCURRENCY);
            Pacing {
                max_concurrency: n,
                task_rate: Some(f64::from(rate) / f64::from(n)),
            }
        }
    }
}

/// The state machine's name within the stack.
const NAME: &str = "${AWS::StackName}-weir-backfill";

fn function_arn(suffix: &str) -> Node {
    Node::Raw(format!(
        "!Sub 'arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:${{WeirFunction}}{suffix}'"
    ))
}

fn allow(sid: &str, actions: &[&str], resources: Vec<Node>) -> Node {
    let mut s = Node::map();
    s.put("Sid", Node::str(sid));
    s.put("Effect", Node::str("Allow"));
    s.put(
        "Action",
        Node::List(actions.iter().map(|a| Node::str(*a)).collect()),
    );
    s.put("Resource", Node::List(resources));
    s
}

/// The role Step Functions runs the map with: invoke weir, read the export's manifest of
/// files, write the results beside it, and run the map's child executions.
pub(super) fn role() -> Node {
    let mut principal = Node::map();
    principal.put("Service", Node::str("states.amazonaws.com"));
    let mut trust_statement = Node::map();
    trust_statement.put("Effect", Node::str("Allow"));
    trust_statement.put("Principal", principal);
    trust_statement.put("Action", Node::str("sts:AssumeRole"));
    let mut trust = Node::map();
    trust.put("Version", Node::str("2012-10-17"));
    trust.put("Statement", Node::List(vec![trust_statement]));
    let states = |kind: &str, tail: &str| {
        Node::Raw(format!(
            "!Sub 'arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:{kind}:{NAME}{tail}'"
        ))
    };
    let statements = vec![
        allow(
            "InvokeWeir",
            &["lambda:InvokeFunction"],
            vec![function_arn(""), function_arn(":*")],
        ),
        allow(
            "ReadTheExport",
            &["s3:GetObject"],
            vec![Node::Raw(
                "!Sub 'arn:${AWS::Partition}:s3:::${BackfillExportBucket}/*'".into(),
            )],
        ),
        allow(
            "WriteResults",
            &[
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ],
            vec![Node::Raw(
                "!Sub 'arn:${AWS::Partition}:s3:::${BackfillExportBucket}/weir-backfill-results/*'"
                    .into(),
            )],
        ),
        allow(
            "RunTheMap",
            &["states:StartExecution"],
            vec![states("stateMachine", "")],
        ),
        allow(
            "WatchTheMap",
            &["states:DescribeExecution", "states:StopExecution"],
            vec![states("execution", ":*")],
        ),
    ];
    let mut document = Node::map();
    document.put("Version", Node::str("2012-10-17"));
    document.put("Statement", Node::List(statements));
    let mut policy = Node::map();
    policy.put("PolicyName", Node::str("weir-backfill"));
    policy.put("PolicyDocument", document);
    let mut p = Node::map();
    p.put("AssumeRolePolicyDocument", trust);
    p.put("Policies", Node::List(vec![policy]));
    conditional(resource("AWS::IAM::Role", p))
}

/// The Distributed Map: per data file, invoke the task, and again with its `next` until
/// it answers `done`.
pub(super) fn state_machine(pacing: Pacing) -> Node {
    let mut task = Node::map();
    task.put("export.$", Node::str("$.export"));
    task.put(
        "dataFileS3Key.$",
        Node::str("$$.Map.Item.Value.dataFileS3Key"),
    );
    task.put("run.$", Node::str("$.run"));
    task.put("keys.$", Node::str("$.keys"));
    if let Some(rate) = pacing.task_rate {
        task.put("ratePerSecond", Node::Raw(number(rate)));
    }
    let mut next = Node::map();
    next.put("weirBackfill", task);
    let mut selector = Node::map();
    selector.put("done", Node::Raw("false".into()));
    selector.put("next", next);

    let mut reader_config = Node::map();
    reader_config.put("InputType", Node::str("JSONL"));
    let mut reader_parameters = Node::map();
    reader_parameters.put("Bucket.$", Node::str("$.bucket"));
    reader_parameters.put("Key.$", Node::str("$.manifestFilesKey"));
    let mut reader = Node::map();
    reader.put("Resource", Node::str("arn:aws:states:::s3:getObject"));
    reader.put("ReaderConfig", reader_config);
    reader.put("Parameters", reader_parameters);

    let mut retry = Node::map();
    retry.put("ErrorEquals", Node::List(vec![Node::str("States.ALL")]));
    retry.put("IntervalSeconds", Node::Raw("5".into()));
    retry.put("MaxAttempts", Node::Raw("6".into()));
    retry.put("BackoffRate", Node::Raw("2".into()));
    let mut invoke_parameters = Node::map();
    invoke_parameters.put("FunctionName", Node::str("${FunctionArn}"));
    invoke_parameters.put("Payload.$", Node::str("$.next"));
    let mut invoke = Node::map();
    invoke.put("Type", Node::str("Task"));
    invoke.put("Resource", Node::str("arn:aws:states:::lambda:invoke"));
    invoke.put("Parameters", invoke_parameters);
    invoke.put("OutputPath", Node::str("$.Payload"));
    invoke.put("Retry", Node::List(vec![retry]));
    invoke.put("Next", Node::str("More"));
    let mut again = Node::map();
    again.put("Variable", Node::str("$.done"));
    again.put("BooleanEquals", Node::Raw("false".into()));
    again.put("Next", Node::str("Invoke"));
    let mut more = Node::map();
    more.put("Type", Node::str("Choice"));
    more.put("Choices", Node::List(vec![again]));
    more.put("Default", Node::str("Done"));
    let mut done = Node::map();
    done.put("Type", Node::str("Succeed"));
    let mut inner = Node::map();
    inner.put("Invoke", invoke);
    inner.put("More", more);
    inner.put("Done", done);
    let mut processor_config = Node::map();
    processor_config.put("Mode", Node::str("DISTRIBUTED"));
    processor_config.put("ExecutionType", Node::str("STANDARD"));
    let mut processor = Node::map();
    processor.put("ProcessorConfig", processor_config);
    processor.put("StartAt", Node::str("Invoke"));
    processor.put("States", inner);

    let mut writer_parameters = Node::map();
    writer_parameters.put("Bucket.$", Node::str("$.bucket"));
    writer_parameters.put("Prefix", Node::str("weir-backfill-results"));
    let mut writer = Node::map();
    writer.put("Resource", Node::str("arn:aws:states:::s3:putObject"));
    writer.put("Parameters", writer_parameters);

    let mut map = Node::map();
    map.put("Type", Node::str("Map"));
    map.put("ItemReader", reader);
    map.put("ItemSelector", selector);
    map.put(
        "MaxConcurrency",
        Node::Raw(pacing.max_concurrency.to_string()),
    );
    map.put("ItemProcessor", processor);
    map.put("ResultWriter", writer);
    map.put("End", Node::Raw("true".into()));
    let mut states = Node::map();
    states.put("DataFiles", map);
    let mut definition = Node::map();
    definition.put(
        "Comment",
        Node::str("weir backfill: each data file of a DynamoDB export through the weir function"),
    );
    definition.put("StartAt", Node::str("DataFiles"));
    definition.put("States", states);

    let mut substitutions = Node::map();
    substitutions.put("FunctionArn", function_arn(""));
    let mut p = Node::map();
    p.put("StateMachineName", Node::Raw(format!("!Sub '{NAME}'")));
    p.put("RoleArn", Node::get_att("WeirBackfillRole.Arn"));
    p.put("DefinitionSubstitutions", substitutions);
    p.put("Definition", definition);
    conditional(resource("AWS::StepFunctions::StateMachine", p))
}

/// `r` in plain decimal, without a needless fraction.
fn number(r: f64) -> String {
    let s = format!("{r:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Puts `Condition: HasBackfill` after the resource's type.
fn conditional(resource: Node) -> Node {
    let Node::Map(entries) = resource else {
        return resource;
    };
    let mut out = Node::map();
    for (key, value) in entries {
        let is_type = key == "Type";
        out.put(key, value);
        if is_type {
            out.put("Condition", Node::str("HasBackfill"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_rates(rates: &[Option<u32>]) -> BTreeMap<String, DestinationSpec> {
        let text = rates
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "[destinations.d{i}]\nendpoint = \"https://example.com/{i}\"\nmethod = \"POST\"\n\
                     detail_types = [\"X\"]\nauth = {{ type = \"none\" }}\n{}",
                    r.map_or(String::new(), |r| format!("rate_limit_per_second = {r}\n"))
                )
            })
            .collect::<String>();
        let manifest = format!(
            "event_bus = \"b\"\n[[routes]]\ntable = \"T\"\nsource = \"weir.t\"\ntenant = {{ attribute = \"tenantId\" }}\n{text}"
        );
        weir_core::manifest::Manifest::parse_with_destinations(
            &manifest,
            weir_core::location::Location::File("m.toml".into()),
        )
        .expect("parses")
        .1
    }

    #[test]
    fn the_slowest_destination_sets_the_pace() {
        let slow = pacing(&with_rates(&[Some(10), Some(300), None]));
        assert_eq!(
            slow,
            Pacing {
                max_concurrency: 1,
                task_rate: Some(10.0)
            }
        );
        let fast = pacing(&with_rates(&[Some(1_200), Some(5_000)]));
        assert_eq!(fast.max_concurrency, 3);
        assert_eq!(fast.task_rate, Some(400.0));
        let huge = pacing(&with_rates(&[Some(300_000)]));
        assert_eq!(huge.max_concurrency, MAX_CONCURRENCY);
        assert_eq!(huge.task_rate, Some(3_000.0));
        let unpaced = pacing(&with_rates(&[None]));
        assert_eq!(unpaced.max_concurrency, UNPACED_CONCURRENCY);
        assert_eq!(unpaced.task_rate, None);
        // Concurrency times each task's rate is the slowest limit, never more.
        for rate in [1, 7, 499, 500, 501, 2_999, 49_999] {
            let p = pacing(&with_rates(&[Some(rate)]));
            let total = f64::from(p.max_concurrency) * p.task_rate.expect("paced");
            assert!((total - f64::from(rate)).abs() < 1e-6, "{rate}: {p:?}");
        }
        assert_eq!(number(3.0), "3");
        assert_eq!(number(166.6666), "166.667");
    }
}
