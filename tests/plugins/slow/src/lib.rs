//! Fault plugin: on a record with a `fault` attribute, stays busy for `config.iterations`
//! rounds of work (set to about twice the time budget), then returns; other records map
//! normally. The guest has no clock, so the budget is crossed by work, not by reading time.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        let rounds = tenant
            .config
            .get("iterations")
            .and_then(|v| v.as_u64())
            .unwrap_or(2_000_000_000);
        let mut x: u64 = 1;
        for i in 0..rounds {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        return Ok(vec![Event::new(
            "test",
            "Slow",
            json!({ "x": x.to_string() }),
        )]);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
