//! `weir decode`: the decoded records of a stream event, exactly what plugins receive.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_DEAD_LETTERS, SetupError, parse_event, read_event, setup};
use weir_core::record;

pub(super) fn decode(event: &Path) -> Result<ExitCode, SetupError> {
    let text = setup(read_event(event))?;
    let parsed = setup(parse_event(event, &text))?;
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    for (i, raw) in parsed.records.iter().enumerate() {
        if let Some(arn) = record::parse(raw.get())
            .ok()
            .and_then(|p| p.unknown_table_arn().map(str::to_owned))
        {
            eprintln!(
                "weir: record {i}: eventSourceARN {arn:?} names no table (a route with table = \"*\" takes it)"
            );
        }
        match record::decode(raw.get()) {
            Ok(r) => {
                let line = serde_json::to_string(&r).unwrap_or_default();
                if writeln!(out, "{line}").is_err() {
                    // stdout closed by its reader (`| head`): it wants no more.
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("weir: record {i}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
