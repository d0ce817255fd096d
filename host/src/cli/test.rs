//! `weir test`: run a plugin's golden cases.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_DEAD_LETTERS, SetupError, runtime, setup};

pub(super) fn test_cases(
    options: crate::cases::TestOptions,
    cases_dir: &Path,
) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let mut out = std::io::stdout().lock();
    let summary = setup(runtime.block_on(crate::cases::run(&options, cases_dir, &mut out)))?;
    let _ = writeln!(
        out,
        "cases: {}, passed: {}, failed: {}{}",
        summary.cases,
        summary.passed,
        summary.failed,
        if options.update {
            format!(", updated: {}", summary.updated)
        } else {
            String::new()
        }
    );
    Ok(if summary.failed > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
