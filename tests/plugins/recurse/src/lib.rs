//! Fault plugin: recurses without bound on a record with a `fault` attribute.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

#[inline(never)]
fn deeper(n: u64, pad: [u64; 16]) -> u64 {
    let pad = std::hint::black_box(pad);
    if n == u64::MAX {
        return 0;
    }
    deeper(n + 1, pad).wrapping_add(pad[(n % 16) as usize])
}

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if faulty(record) {
        let n = deeper(0, [7; 16]);
        return Ok(vec![Event::new("test", "Deep", json!({ "n": n }))]);
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
