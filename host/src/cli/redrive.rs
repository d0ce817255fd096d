//! `weir redrive`: dead letters through the current manifest again, or an API destination's
//! dead-letter queue back onto the bus. Only what weir wrote is taken: letters with a valid
//! MAC, and delivery events from a rule of this bus with the manifest's sources and
//! tenants; anything else stays in the queue and is reported.

use std::process::ExitCode;

use super::{EXIT_DEAD_LETTERS, SetupError, load, runtime, setup};
use weir_aws::dead_letter::LetterKey;
use weir_aws::publish::{PublishConfig, Publisher};
use weir_aws::redrive::{DeliveryCheck, RedriveOptions};

/// What a redrive trusts and may delete beyond its default (letters signed with the key,
/// routable records): `weir redrive`'s flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Trust {
    /// The Secrets Manager secret (name or ARN) holding the dead-letter key (default: the
    /// manifest's dead_letter_key).
    #[arg(long)]
    pub dead_letter_key: Option<String>,
    /// Also redrive letters without a MAC (written before letters were signed), after
    /// reviewing the queue. A letter whose MAC is wrong is never redriven.
    #[arg(long)]
    pub accept_unsigned: bool,
    /// Delete letters the current manifest has no route or tenant for (default: keep them).
    #[arg(long)]
    pub delete_unroutable: bool,
}

/// `weir redrive` with its trust flags.
pub(super) fn redrive(
    manifest: &str,
    queue: Option<String>,
    delivery_queue: Option<String>,
    bus: Option<String>,
    dry_run: bool,
    trust: &Trust,
) -> Result<ExitCode, SetupError> {
    let runtime = runtime()?;
    let report = runtime.block_on(async {
        let loader = setup(load(manifest).await)?;
        let sdk = weir_aws::client::sdk_config().await;
        let sqs = weir_aws::client::sqs(&sdk);
        let publisher = Publisher::new(weir_aws::client::eventbridge(&sdk), PublishConfig::default());
        let bus = bus.unwrap_or_else(|| loader.manifest().event_bus.clone());
        let progress = |done: usize, total: usize| eprintln!("redrive: {done} / {total}");
        let report = match (queue, delivery_queue) {
            (Some(q), _) => {
                if !dry_run {
                    setup(publisher.check_bus(&bus).await)?;
                }
                let secret = trust
                    .dead_letter_key
                    .clone()
                    .or_else(|| loader.manifest().dead_letter_key.clone());
                let key = match secret {
                    Some(secret) => Some(setup(
                        LetterKey::read(&sdk, &secret)
                            .await
                            .map_err(anyhow::Error::from),
                    )?),
                    None if trust.accept_unsigned => None,
                    None => {
                        return Err(SetupError(anyhow::anyhow!(
                            "{manifest}: weir redrive --queue needs the dead-letter key, to take only letters weir wrote: dead_letter_key in the manifest, or the secret in WEIR_DEAD_LETTER_KEY"
                        )));
                    }
                };
                let options = RedriveOptions {
                    key,
                    accept_unsigned: trust.accept_unsigned,
                    delete_unroutable: trust.delete_unroutable,
                    s3: Some(weir_aws::client::s3(&sdk)),
                };
                let publisher = (!dry_run).then_some(&publisher);
                weir_aws::redrive::dead_letters(
                    &sqs,
                    &q,
                    loader.pipeline(),
                    publisher,
                    &options,
                    progress,
                )
                .await
            }
            (None, Some(q)) => {
                // The bus's ARN says which rules' events may go back (read in a dry run too).
                let bus_arn = setup(publisher.check_bus(&bus).await)?;
                let check = DeliveryCheck::new(loader.manifest(), &bus_arn);
                let publisher = (!dry_run).then_some(&publisher);
                weir_aws::redrive::deliveries(&sqs, &q, &bus, &check, publisher, progress).await
            }
            (None, None) => Err(anyhow::anyhow!("give --queue or --delivery-queue")),
        };
        setup(report)
    })?;
    for line in &report.lines {
        println!("{}{line}", if dry_run { "would: " } else { "" });
    }
    eprintln!(
        "redrive{}: {} received, {} done, {} left in the queue ({} not weir's, {} kept: no route)",
        if dry_run { " (dry run)" } else { "" },
        report.received,
        report.done,
        report.left,
        report.not_weirs,
        report.unroutable
    );
    Ok(if report.left > 0 {
        ExitCode::from(EXIT_DEAD_LETTERS)
    } else {
        ExitCode::SUCCESS
    })
}
