//! `weir new plugin`: scaffold a plugin with one golden case.

use std::process::ExitCode;

use super::{SetupError, setup};

pub(super) fn new(what: crate::scaffold::NewCommand) -> Result<ExitCode, SetupError> {
    let crate::scaffold::NewCommand::Plugin { name, lang, dir } = what;
    let made = setup(crate::scaffold::new_plugin(&name, lang, &dir))?;
    // The plugin is made; a stdout closed by its reader only shortens the advice.
    let _ = print_made(&made);
    Ok(ExitCode::SUCCESS)
}

/// What was made and what to run next, on stdout.
fn print_made(made: &crate::scaffold::Scaffolded) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "created {} ({} files)",
        crate::scaffold::shell_word(&made.dir.display().to_string()),
        made.files.len()
    )?;
    writeln!(out, "next:")?;
    for command in &made.next {
        writeln!(out, "  {command}")?;
    }
    out.flush()
}
