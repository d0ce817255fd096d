//! `weir check`: load everything a manifest names and report every problem at once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::{EXIT_DEAD_LETTERS, SetupError, runtime};
use crate::infra::TemplateProblem;
use weir_aws::store::ObjectStore;
use weir_core::location::Location;
use weir_core::manifest::{Manifest, ManifestError};
use weir_core::text::one_line;
use weir_core::transform::{LoadProblem, LoadProblems};
use weir_runtime::loader::Loader;
use weir_runtime::plugin::PluginEngine;

pub(super) fn check(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let report = runtime.block_on(report(manifest)).map_err(SetupError)?;
    for warning in &report.warnings {
        eprintln!("warning: {}: {warning}", one_line(manifest));
    }
    for line in &report.lines {
        println!("{line}");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DEAD_LETTERS)
    })
}

/// What `weir check` prints, and whether the manifest is fit to use.
struct Report {
    /// The lines to print: a summary naming the manifest, then one line per problem.
    lines: Vec<String>,
    /// No problem was found.
    ok: bool,
    /// What would pass EventBridge's default quotas: said, but not a problem.
    warnings: Vec<String>,
}

/// Loads the manifest at `manifest` and everything it names. An unusable manifest gives
/// a first line naming it with the count (`weir.toml: 2 problems`), then one problem a
/// line, each starting with its key; every key and message is escaped onto one line.
async fn report(manifest: &str) -> anyhow::Result<Report> {
    let location = Location::parse(manifest)?;
    let (template, warnings) = template_problems(&location).await;
    let engine = Arc::new(PluginEngine::new().context("cannot start the plugin engine")?);
    let loaded = Loader::load(
        ObjectStore::default(),
        engine,
        location,
        weir_runtime::loader::DEFAULT_INTERVAL,
    )
    .await;
    let shown = one_line(manifest);
    let problems = match &loaded {
        Ok(_) => Vec::new(),
        Err(problems) => problem_lines(problems),
    };
    let problems: Vec<String> = problems
        .into_iter()
        .chain(
            template
                .iter()
                .map(|p| format!("{}: {}", one_line(&p.key), one_line(p.reason))),
        )
        .collect();
    match loaded {
        Ok(loader) if problems.is_empty() => {
            let m = loader.manifest();
            Ok(Report {
                lines: vec![format!(
                    "{shown}: ok: {} plugins, {} tenants, {} routes, bus {:?}",
                    loader.pipeline().loaded_plugins().len(),
                    m.tenants.len(),
                    m.routes.len(),
                    m.event_bus
                )],
                ok: true,
                warnings,
            })
        }
        _ => {
            let count = match problems.len() {
                1 => "1 problem".to_owned(),
                n => format!("{n} problems"),
            };
            let mut lines = vec![format!("{shown}: {count}")];
            lines.extend(problems);
            Ok(Report {
                lines,
                ok: false,
                warnings,
            })
        }
    }
}

/// One line per problem the loader found, each starting with its key (`plugins.p`,
/// `tenants.acme.limits.time_ms`); a manifest that could not be read or parsed gives its
/// one reason.
fn problem_lines(problems: &LoadProblems) -> Vec<String> {
    let mut lines = Vec::new();
    for problem in &problems.problems {
        match problem {
            LoadProblem::Manifest(ManifestError::Invalid { problems, .. }) => {
                lines.extend(
                    problems
                        .iter()
                        .map(|p| format!("{}: {}", one_line(&p.key), one_line(&p.message))),
                );
            }
            LoadProblem::Manifest(ManifestError::Parse { message, .. }) => {
                lines.push(one_line(message).into_owned());
            }
            LoadProblem::Manifest(e @ ManifestError::Unavailable { .. }) => {
                lines.push(one_line(&e.to_string()).into_owned());
            }
            LoadProblem::Plugin { name, error } => {
                // The slot's message starts with the plugin's key already.
                let message = error.to_string();
                let key = format!("plugins.{name}");
                lines.push(if message.starts_with(&format!("{key}:")) {
                    one_line(&message).into_owned()
                } else {
                    format!("{}: {}", one_line(&key), one_line(&message))
                });
            }
        }
    }
    lines
}

/// The strings `weir infra` would refuse to put into a template
/// ([`crate::infra::template_problems`]), each naming its key, and the EventBridge quotas
/// its destinations would pass ([`crate::infra::quota_warnings`]). A manifest that cannot
/// be read or parsed gives none here: the loader reports why.
async fn template_problems(location: &Location) -> (Vec<TemplateProblem>, Vec<String>) {
    let Ok((bytes, _)) = ObjectStore::default().read(location).await else {
        return (Vec::new(), Vec::new());
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return (Vec::new(), Vec::new());
    };
    match Manifest::parse_with_destinations(&text, location.clone()) {
        Ok((m, destinations)) => (
            crate::infra::template_problems(&m, &destinations),
            crate::infra::quota_warnings(&destinations),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest with three problems in three sections, one under a tenant whose name
    /// holds a newline: one summary line naming the file and the count, then one line per
    /// problem starting with its key, each on one line.
    #[tokio::test]
    async fn check_prints_the_file_once_and_one_problem_a_line_each_with_its_key() {
        let dir = std::env::temp_dir().join(format!("weir-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("weir.toml");
        std::fs::write(
            &path,
            "event_bus = \"b\"\ncolour = 1\n[plugins.p]\npath = \"p.wasm\"\n\
             [tenants.acme]\nplugin = \"p\"\nlimits = { time_ms = 0 }\n\
             [tenants.\"evil\\nname\"]\nplugin = \"nowhere\"\n",
        )
        .expect("write manifest");
        let shown = path.display().to_string();
        let report = report(&shown).await.expect("check runs");
        std::fs::remove_dir_all(&dir).ok();
        assert!(!report.ok);
        assert_eq!(
            report.lines,
            [
                format!("{shown}: 3 problems"),
                "colour: unknown key (expected one of event_bus, dead_letter_queue, dead_letter_bucket, dead_letter_key, require_precompiled, limits, plugins, routes, tenants, destinations)".to_owned(),
                "tenants.acme.limits.time_ms: must be above 0".to_owned(),
                "tenants.\"evil\\u000Aname\".plugin: names plugin \"nowhere\", which is not in [plugins]".to_owned(),
            ]
        );
    }

    /// One problem is "1 problem", not "1 problems".
    #[tokio::test]
    async fn one_problem_is_counted_in_the_singular() {
        let dir = std::env::temp_dir().join(format!("weir-check-one-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("weir.toml");
        std::fs::write(&path, "event_bus = \"\"\n").expect("write manifest");
        let shown = path.display().to_string();
        let report = report(&shown).await.expect("check runs");
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            report.lines,
            [
                format!("{shown}: 1 problem"),
                "event_bus: is missing or empty".to_owned()
            ]
        );
    }
}
