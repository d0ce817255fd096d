//! `weir infra`: the CloudFormation for a manifest's destinations.

use std::process::ExitCode;

use anyhow::Context as _;

use super::{SetupError, runtime, setup};
use weir_aws::store::ObjectStore;
use weir_core::location::Location;

pub(super) fn infra(manifest: &str) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let text = setup(runtime.block_on(async {
        let location = Location::parse(manifest)?;
        let (bytes, _) = ObjectStore::default()
            .read_at_most(&location, weir_core::location::MAX_MANIFEST_BYTES)
            .await?;
        let text =
            String::from_utf8(bytes).with_context(|| format!("{location}: not UTF-8 text"))?;
        anyhow::Ok((text, location))
    }))?;
    let (m, destinations) = setup(
        weir_core::manifest::Manifest::parse_with_destinations(&text.0, text.1)
            .map_err(anyhow::Error::from),
    )?;
    if destinations.is_empty() {
        return Err(SetupError(anyhow::anyhow!(
            "{manifest}: no [destinations.<name>] sections: nothing to generate"
        )));
    }
    // Before the template, so a deploy that EventBridge's quotas would refuse is seen first.
    for warning in crate::infra::quota_warnings(&destinations) {
        eprintln!(
            "weir: warning: {}: {warning}",
            weir_core::text::one_line(manifest)
        );
    }
    match crate::infra::template(&m, &destinations) {
        Ok(template) => {
            print!("{template}");
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => Err(SetupError(anyhow::anyhow!(
            "{manifest}: cannot be written into a template: {problems}"
        ))),
    }
}
