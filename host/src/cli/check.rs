//! `weir check`: load everything a manifest names and report every problem at once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::{EXIT_DEAD_LETTERS, SetupError, runtime};
use crate::reload::Loader;
use weir_aws::store::{Location, Store};
use weir_runtime::plugin::PluginEngine;

pub(super) fn check(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    match runtime.block_on(async {
        let location = Location::parse(manifest)?;
        let engine = Arc::new(PluginEngine::new().context("cannot start the plugin engine")?);
        anyhow::Ok(
            Loader::load(
                Store::default(),
                engine,
                location,
                crate::reload::DEFAULT_INTERVAL,
            )
            .await,
        )
    }) {
        Err(e) => Err(SetupError(e)),
        Ok(Ok(loader)) => {
            let m = loader.manifest();
            println!(
                "{manifest}: ok: {} plugins, {} tenants, {} routes, bus {:?}",
                loader.pipeline().loaded_plugins().len(),
                m.tenants.len(),
                m.routes.len(),
                m.event_bus
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(problems)) => {
            for p in &problems.problems {
                println!("{manifest}: {p}");
            }
            println!("{manifest}: {} problems", problems.problems.len());
            Ok(ExitCode::from(EXIT_DEAD_LETTERS))
        }
    }
}
