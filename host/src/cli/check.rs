//! `weir check`: load everything a manifest names and report every problem at once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::{EXIT_DEAD_LETTERS, SetupError, runtime};
use crate::reload::Loader;
use weir_aws::store::Store;
use weir_core::location::Location;
use weir_core::manifest::Manifest;
use weir_runtime::plugin::PluginEngine;

pub(super) fn check(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    match runtime.block_on(async {
        let location = Location::parse(manifest)?;
        let template = template_problems(&location).await;
        let engine = Arc::new(PluginEngine::new().context("cannot start the plugin engine")?);
        anyhow::Ok((
            Loader::load(
                Store::default(),
                engine,
                location,
                crate::reload::DEFAULT_INTERVAL,
            )
            .await,
            template,
        ))
    }) {
        Err(e) => Err(SetupError(e)),
        Ok((Ok(loader), template)) if template.is_empty() => {
            let m = loader.manifest();
            println!(
                "{}: ok: {} plugins, {} tenants, {} routes, bus {:?}",
                weir_core::text::one_line(manifest),
                loader.pipeline().loaded_plugins().len(),
                m.tenants.len(),
                m.routes.len(),
                m.event_bus
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok((loaded, template)) => {
            let mut problems: Vec<String> = match loaded {
                Ok(_) => Vec::new(),
                Err(problems) => problems.problems.iter().map(ToString::to_string).collect(),
            };
            problems.extend(template);
            let shown = weir_core::text::one_line(manifest);
            for p in &problems {
                println!("{shown}: {}", weir_core::text::one_line(p));
            }
            println!("{shown}: {} problems", problems.len());
            Ok(ExitCode::from(EXIT_DEAD_LETTERS))
        }
    }
}

/// The strings `weir infra` would refuse to put into a template
/// ([`crate::infra::template_problems`]), each naming its key. A manifest that cannot be
/// read or parsed gives none here: the loader reports why.
async fn template_problems(location: &Location) -> Vec<String> {
    let Ok((bytes, _)) = Store::default().read(location).await else {
        return Vec::new();
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Vec::new();
    };
    match Manifest::parse_with_destinations(&text, location.clone()) {
        Ok((m, destinations)) => crate::infra::template_problems(&m, &destinations)
            .iter()
            .map(ToString::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}
