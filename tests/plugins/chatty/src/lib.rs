//! Fault plugin: logs 100,000 lines (half through the log import, half on stdout) on a
//! record with a `fault` attribute, then returns one normal event. A record's `say`
//! attribute is logged as written, through both channels: text a hostile author (or a
//! record) chooses, newlines and terminal controls included.
use weir_fault_common::{faulty, normal};
use weir_plugin_sdk::{Error, Event, Record, Tenant};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    if let Some(say) = record.image().and_then(|i| i.str("/say")) {
        weir_plugin_sdk::log::error(say);
        println!("{say}");
    }
    if faulty(record) {
        for i in 0..50_000 {
            weir_plugin_sdk::log::info(&format!("chatty line {i}"));
            println!("chatty stdout line {i}");
        }
    }
    Ok(normal(record))
}

weir_plugin_sdk::plugin!(transform);
