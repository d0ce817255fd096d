//! Logs: plain text on a terminal for the CLI, JSON lines for CloudWatch in Lambda.

use tracing_subscriber::EnvFilter;
use weir_core::batch::Counts;

/// The log filter: `AWS_LAMBDA_LOG_LEVEL` (as Lambda's advanced logging sets it), else
/// `RUST_LOG`, else `default`.
pub fn filter(default: &str) -> EnvFilter {
    filter_from(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok(),
        std::env::var("RUST_LOG").ok(),
        default,
    )
}

/// [`filter`] from the two variables' values, so it can be tested without the environment.
fn filter_from(lambda_level: Option<String>, rust_log: Option<String>, default: &str) -> EnvFilter {
    let spec = lambda_level
        .map(|l| l.to_ascii_lowercase())
        .or(rust_log)
        .unwrap_or_else(|| default.to_owned());
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(default))
}

/// The command line's filter unless `RUST_LOG` says otherwise: weir's warnings, and only the
/// AWS SDK's errors. Its providers warn at length (about 600 characters a line, the
/// instance-metadata service's whole response) before weir's own one-line error says what
/// is missing; `RUST_LOG=warn` shows them again.
pub const CLI_DEFAULT_FILTER: &str = "warn,aws_config=error,aws_smithy=error,aws_sdk=error";

/// Human-readable logs on stderr, quiet by default so stdout stays the command's output.
/// Every message and field is escaped to one line ([`weir_core::text::one_line`]): text from
/// plugins, records and manifests reaches these lines, and must never start one of its own
/// or steer the terminal.
pub fn init_cli() {
    use tracing_subscriber::field::MakeExt as _;
    let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = weir_core::text::one_line(&text);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{field}={text}")
        }
    })
    .delimited(" ");
    let _ = tracing_subscriber::fmt()
        .fmt_fields(fields)
        .with_env_filter(filter(CLI_DEFAULT_FILTER))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// JSON lines on stdout for CloudWatch Logs: level, message, timestamp, and the fields of
/// the current span (request id, sequence number) and event (tenant, plugin).
pub fn init_lambda() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(filter("info"))
        .with_writer(std::io::stdout)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// One invocation's numbers, written as CloudWatch Embedded Metric Format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationMetrics {
    /// The batch's records by verdict, and the entries EventBridge accepted.
    pub counts: Counts,
    /// PutEvents calls made, re-sends included.
    pub put_events_calls: usize,
    /// PutEvents calls that re-sent entries after a failure.
    pub put_events_retries: usize,
    /// Milliseconds spent running the records through the pipeline (decode, plugins,
    /// validation).
    pub plugin_ms: f64,
    /// Reloads that failed so far in this process (the old version kept serving).
    pub reload_failures: usize,
    /// Per tenant, its records' counts.
    pub tenants: Vec<(String, Counts)>,
}

/// The EMF namespace weir's metrics live in.
pub const METRICS_NAMESPACE: &str = "weir";

/// The Tenant dimension of records whose tenant the manifest does not serve (no entry of
/// its own and no `default`): one value for all of them, whatever ids they carry.
pub const UNSERVED_TENANT: &str = "(unserved)";

impl InvocationMetrics {
    /// The same metrics with the Tenant dimension limited to the manifest's tenants: a
    /// record's tenant id is data anyone writing to the table chooses, and each distinct
    /// dimension value is a CloudWatch metric of its own (cost without bound). A tenant
    /// with an entry keeps its name; others are counted under the entry that served them
    /// (`default`), or [`UNSERVED_TENANT`].
    pub fn by_manifest_tenants(mut self, manifest: &weir_core::manifest::Manifest) -> Self {
        let mut folded: std::collections::BTreeMap<String, Counts> = Default::default();
        for (tenant, counts) in std::mem::take(&mut self.tenants) {
            let entry = manifest
                .tenant_entry(&tenant)
                .map_or(UNSERVED_TENANT, |(name, _)| name);
            folded.entry(entry.to_owned()).or_default().add(&counts);
        }
        self.tenants = folded.into_iter().collect();
        self
    }

    /// EMF documents: one with the function name as dimension, and (when
    /// `tenant_dimension`) one per tenant with function name and tenant.
    pub fn emf(
        &self,
        function_name: &str,
        timestamp_ms: u64,
        tenant_dimension: bool,
    ) -> Vec<String> {
        use serde_json::json;
        let count = |name: &str| json!({"Name": name, "Unit": "Count"});
        let mut docs = vec![
            json!({
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": [["FunctionName"]],
                        "Metrics": [
                            count("Records"), count("Published"), count("Filtered"),
                            count("Coalesced"), count("DeadLettered"), count("Retried"),
                            count("EntriesPublished"),
                            count("PutEventsCalls"), count("PutEventsRetries"),
                            {"Name": "PluginTime", "Unit": "Milliseconds"},
                            count("ReloadFailures"),
                        ],
                    }],
                },
                "FunctionName": function_name,
                "Records": self.counts.records,
                "Published": self.counts.published,
                "Filtered": self.counts.filtered,
                "Coalesced": self.counts.coalesced,
                "DeadLettered": self.counts.dead_lettered,
                "Retried": self.counts.retried,
                "EntriesPublished": self.counts.entries,
                "PutEventsCalls": self.put_events_calls,
                "PutEventsRetries": self.put_events_retries,
                "PluginTime": self.plugin_ms,
                "ReloadFailures": self.reload_failures,
            })
            .to_string(),
        ];
        if tenant_dimension {
            for (tenant, counts) in &self.tenants {
                let c = counts;
                docs.push(
                    json!({
                        "_aws": {
                            "Timestamp": timestamp_ms,
                            "CloudWatchMetrics": [{
                                "Namespace": METRICS_NAMESPACE,
                                "Dimensions": [["FunctionName", "Tenant"]],
                                "Metrics": [count("Records"), count("Published"), count("Filtered"),
                                            count("Coalesced"), count("DeadLettered"),
                                            count("Retried")],
                            }],
                        },
                        "FunctionName": function_name,
                        "Tenant": tenant,
                        "Records": c.records,
                        "Published": c.published,
                        "Filtered": c.filtered,
                        "Coalesced": c.coalesced,
                        "DeadLettered": c.dead_lettered,
                        "Retried": c.retried,
                    })
                    .to_string(),
                );
            }
        }
        docs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `filter` lets through of a warning from weir and one from the SDK's
    /// instance-metadata provider.
    fn let_through(filter: EnvFilter) -> String {
        use tracing_subscriber::layer::SubscriberExt as _;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = {
            let lines = lines.clone();
            move || Captured(lines.clone())
        };
        let subscriber = tracing_subscriber::registry().with(filter).with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "aws_config::imds::region", "failed to load region from IMDS");
            tracing::warn!(target: "weir::cli", "dead-lettered");
        });
        let bytes = lines.lock().map(|l| l.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut lines) = self.0.lock() {
                lines.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_cli_hides_the_sdks_warnings_unless_rust_log_asks_for_them() {
        let quiet = let_through(filter_from(None, None, CLI_DEFAULT_FILTER));
        assert!(quiet.contains("dead-lettered"), "{quiet}");
        assert!(!quiet.contains("IMDS"), "{quiet}");
        let asked = let_through(filter_from(None, Some("warn".into()), CLI_DEFAULT_FILTER));
        assert!(
            asked.contains("IMDS") && asked.contains("dead-lettered"),
            "{asked}"
        );
    }

    #[test]
    fn emf_documents_declare_every_metric_they_carry() {
        let m = InvocationMetrics {
            counts: Counts {
                records: 5,
                published: 2,
                filtered: 1,
                coalesced: 0,
                dead_lettered: 1,
                retried: 1,
                entries: 3,
            },
            put_events_calls: 2,
            put_events_retries: 1,
            plugin_ms: 1.5,
            reload_failures: 0,
            tenants: vec![(
                "acme".into(),
                Counts {
                    records: 5,
                    published: 2,
                    filtered: 1,
                    dead_lettered: 1,
                    retried: 1,
                    ..Counts::default()
                },
            )],
        };
        let docs = m.emf("weir-fn", 1_700_000_000_000, true);
        assert_eq!(docs.len(), 2);
        for doc in &docs {
            let v: serde_json::Value = serde_json::from_str(doc).expect("JSON");
            let decl = &v["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(decl["Namespace"], "weir");
            assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
            for metric in decl["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("name");
                assert!(v[name].is_number(), "{name} declared but missing in {doc}");
            }
            for dim in decl["Dimensions"][0].as_array().expect("dims") {
                assert!(v[dim.as_str().expect("dim")].is_string());
            }
        }
        let tenant: serde_json::Value = serde_json::from_str(&docs[1]).expect("JSON");
        assert_eq!(
            (tenant["Tenant"].as_str(), tenant["Retried"].as_u64()),
            (Some("acme"), Some(1))
        );
        assert_eq!(m.emf("f", 0, false).len(), 1);
    }

    fn manifest(tenants: &str) -> weir_core::manifest::Manifest {
        let text = format!(
            "event_bus = \"b\"\n[plugins.p]\npath = \"p.wasm\"\n[[routes]]\ntable = \"T\"\nsource = \"s\"\ntenant = {{ attribute = \"t\" }}\n{tenants}"
        );
        weir_core::manifest::Manifest::parse(
            &text,
            weir_core::location::Location::File("/m/weir.toml".into()),
        )
        .expect("a manifest")
    }

    #[test]
    fn the_tenant_dimension_holds_only_the_manifests_tenants() {
        // Tenant ids are record data: a writer to the table can make a new one per record.
        let metrics = |n: usize| InvocationMetrics {
            tenants: (0..n)
                .map(|i| {
                    let filtered = Counts {
                        records: 1,
                        filtered: 1,
                        ..Counts::default()
                    };
                    (format!("attacker-{i}"), filtered)
                })
                .chain([(
                    "acme".to_owned(),
                    Counts {
                        records: 2,
                        published: 2,
                        ..Counts::default()
                    },
                )])
                .collect(),
            ..Default::default()
        };
        let tenants = |docs: Vec<String>| -> Vec<(String, u64)> {
            docs.iter()
                .skip(1)
                .map(|d| {
                    let v: serde_json::Value = serde_json::from_str(d).expect("JSON");
                    (
                        v["Tenant"].as_str().expect("tenant").to_owned(),
                        v["Records"].as_u64().expect("records"),
                    )
                })
                .collect()
        };
        let with_default =
            manifest("[tenants.acme]\nplugin = \"p\"\n[tenants.default]\nplugin = \"p\"\n");
        let docs = metrics(1000)
            .by_manifest_tenants(&with_default)
            .emf("f", 0, true);
        assert_eq!(
            tenants(docs),
            [("acme".to_owned(), 2), ("default".to_owned(), 1000)]
        );
        let without = manifest("[tenants.acme]\nplugin = \"p\"\n");
        let docs = metrics(3).by_manifest_tenants(&without).emf("f", 0, true);
        assert_eq!(
            tenants(docs),
            [("(unserved)".to_owned(), 3), ("acme".to_owned(), 2)]
        );
    }
}
