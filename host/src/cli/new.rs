//! `weir new plugin`: scaffold a plugin with one golden case.

use std::process::ExitCode;

use super::{SetupError, setup};

pub(super) fn new(what: crate::scaffold::NewCommand) -> Result<ExitCode, SetupError> {
    let crate::scaffold::NewCommand::Plugin {
        name,
        lang,
        dir,
        sdk,
    } = what;
    let made = setup(crate::scaffold::new_plugin(
        &name,
        lang,
        &dir,
        sdk.as_deref(),
    ))?;
    println!(
        "created {} ({} files)",
        made.dir.display(),
        made.files.len()
    );
    println!("next:");
    for command in &made.next {
        println!("  {command}");
    }
    Ok(ExitCode::SUCCESS)
}
