//! What a fresh plugin instance costs (`weir-bench fresh`, run by `all`): from
//! instantiating it for a tenant it has never served to the end of its first call, beside a
//! warm instance's call, with the page faults each step takes.
//!
//! Every round makes one instance per tenant id it has not used before (the pipeline never
//! reuses an instance across tenants), calls it twice on the same record, and drops it, as
//! a batch over many tenants does. The medians are printed as a Markdown table and, with
//! `--json`, as one JSON line.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use weir_core::manifest::Limits;
use weir_core::record::{self, LazyRecord};

use crate::{lazy_loader, read_records, runtime, tenant_config};

/// One instance's steps, timed.
#[derive(Default, Clone, Copy)]
struct Steps {
    instantiate: Duration,
    first_call: Duration,
    second_call: Duration,
    drop: Duration,
    /// Minor page faults during instantiate and the first call.
    faults_fresh: u64,
    /// Minor page faults during the second call.
    faults_warm: u64,
}

/// Makes `instances` fresh instances of the manifest's first plugin, each for a new tenant,
/// after `warmup` untimed ones; prints the medians.
pub(crate) fn fresh(
    manifest: &Path,
    event: &Path,
    instances: usize,
    warmup: usize,
    as_json: bool,
) -> anyhow::Result<()> {
    let raws = read_records(event)?;
    let parsed: Vec<&str> = raws
        .iter()
        .map(|r| r.get())
        .filter(|r| record::parse(r).is_ok_and(|p| p.new_image_text().is_some()))
        .collect();
    anyhow::ensure!(
        !parsed.is_empty(),
        "the event has no record with a new image"
    );
    let rt = runtime()?;
    let loader = rt.block_on(lazy_loader(manifest))?;
    let pipeline = loader.pipeline();
    rt.block_on(pipeline.load_all())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, slot) = pipeline
        .slots()
        .iter()
        .next()
        .context("the manifest names no plugin")?;
    let plugin = slot.loaded().context("the plugin did not load")?.clone();
    let limits = Limits {
        time_ms: 10_000,
        ..Limits::default()
    };
    // The i-th tenant never served before (named after `what`), its config and a record.
    let case = |what: &str, i: usize| -> anyhow::Result<(String, String, LazyRecord<'_>)> {
        Ok((
            format!("{what}-{i}"),
            serde_json::to_string(&tenant_config(i))?,
            LazyRecord::new(record::parse(parsed[i % parsed.len()])?),
        ))
    };
    let mut steps = Vec::with_capacity(instances);
    for i in 0..warmup + instances {
        let (tenant, config, record) = case("fresh", i)?;
        let f0 = minor_faults();
        let t0 = Instant::now();
        let mut instance = plugin
            .instantiate(&tenant, limits)
            .map_err(|e| anyhow::anyhow!("instantiate: {e}"))?;
        let t1 = Instant::now();
        let first = instance.transform(&record, &config);
        let t2 = Instant::now();
        // Page faults are counted outside the timed steps (reading them is a syscall).
        let f1 = minor_faults();
        let t2b = Instant::now();
        let second = instance.transform(&record, &config);
        let t3 = Instant::now();
        let f2 = minor_faults();
        let t3b = Instant::now();
        drop(instance);
        let t4 = Instant::now();
        anyhow::ensure!(
            first.result.is_ok() == second.result.is_ok(),
            "the first and second calls disagree"
        );
        if i >= warmup {
            steps.push(Steps {
                instantiate: t1 - t0,
                first_call: t2 - t1,
                second_call: t3 - t2b,
                drop: t4 - t3b,
                faults_fresh: f1.saturating_sub(f0),
                faults_warm: f2.saturating_sub(f1),
            });
        }
    }
    // What a warm instance holds: `hold` instances made and called once each, all kept.
    let hold = instances.min(1000);
    let rss_before = crate::rss_mb();
    let mut held = Vec::with_capacity(hold);
    for i in 0..hold {
        let (tenant, config, record) = case("held", i)?;
        let mut instance = plugin
            .instantiate(&tenant, limits)
            .map_err(|e| anyhow::anyhow!("instantiate: {e}"))?;
        let _ = instance.transform(&record, &config);
        held.push(instance);
    }
    let held_kb = (crate::rss_mb() - rss_before) * 1024.0 / hold.max(1) as f64;
    drop(held);
    let us = |f: fn(&Steps) -> Duration| {
        let mut v: Vec<f64> = steps.iter().map(|s| f(s).as_secs_f64() * 1e6).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let count = |f: fn(&Steps) -> u64| {
        let mut v: Vec<u64> = steps.iter().map(f).collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    };
    let instantiate = us(|s| s.instantiate);
    let first = us(|s| s.first_call);
    let second = us(|s| s.second_call);
    let fresh_total = us(|s| s.instantiate + s.first_call);
    let dropped = us(|s| s.drop);
    if as_json {
        println!(
            "{}",
            json!({
                "instances": steps.len(),
                "instantiate_us": instantiate,
                "first_call_us": first,
                "warm_call_us": second,
                "fresh_us": fresh_total,
                "drop_us": dropped,
                "faults_fresh": count(|s| s.faults_fresh),
                "faults_warm": count(|s| s.faults_warm),
                "resident_kb_per_warm_instance": held_kb,
            })
        );
    } else {
        println!(
            "| step (median of {} instances) | µs | minor page faults |\n| --- | ---: | ---: |\n\
             | instantiate | {instantiate:.2} | |\n\
             | first call | {first:.2} | |\n\
             | **fresh instance: instantiate to the end of its first call** | **{fresh_total:.2}** | {} |\n\
             | a warm instance's call (the same record again) | {second:.2} | {} |\n\
             | drop (the slot back to the pool) | {dropped:.2} | |\n\n\
             A warm instance (called once, kept) holds {held_kb:.0} KiB resident ({hold} held).",
            steps.len(),
            count(|s| s.faults_fresh),
            count(|s| s.faults_warm),
        );
    }
    Ok(())
}

/// This process's minor page faults so far (`/proc/self/stat`, field 10); 0 where unreadable.
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The command name (field 2) may hold spaces: count from after its `)`.
            let rest = s.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}
