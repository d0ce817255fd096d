//! `weir redrive`: dead letters through the current manifest again, or an API destination's
//! dead-letter queue back onto the bus.

use std::process::ExitCode;

use super::{EXIT_DEAD_LETTERS, SetupError, load, runtime, setup};
use weir_aws::publish::{PublishConfig, Publisher};

pub(super) fn redrive(
    manifest: &str,
    queue: Option<String>,
    delivery_queue: Option<String>,
    bus: Option<String>,
    dry_run: bool,
) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let loader = setup(load(manifest).await)?;
        let sdk = weir_aws::aws::sdk_config().await;
        let sqs = weir_aws::aws::sqs(&sdk);
        let publisher = Publisher::new(weir_aws::aws::eventbridge(&sdk), PublishConfig::default());
        let bus = bus.unwrap_or_else(|| loader.manifest().event_bus.clone());
        if !dry_run {
            setup(publisher.check_bus(&bus).await)?;
        }
        let publisher = (!dry_run).then_some(&publisher);
        let progress = |done: usize, total: usize| eprintln!("redrive: {done} / {total}");
        let report = match (queue, delivery_queue) {
            (Some(q), _) => {
                weir_aws::redrive::dead_letters(&sqs, &q, loader.pipeline(), publisher, progress)
                    .await
            }
            (None, Some(q)) => {
                weir_aws::redrive::deliveries(&sqs, &q, &bus, publisher, progress).await
            }
            (None, None) => Err(anyhow::anyhow!("give --queue or --delivery-queue")),
        };
        setup(report)
    })?;
    for line in &report.lines {
        println!("{}{line}", if dry_run { "would: " } else { "" });
    }
    eprintln!(
        "redrive{}: {} received, {} done, {} left in the queue",
        if dry_run { " (dry run)" } else { "" },
        report.received,
        report.done,
        report.left
    );
    Ok(if report.left > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
