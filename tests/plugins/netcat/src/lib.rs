//! Fault plugin: opens a TCP connection. A Rust guest that touches `std::net` imports
//! `wasi:sockets`, which weir refuses when the plugin is loaded, so this never runs.

use std::io::Write;

use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let sent = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(mut s) => s.write_all(record.event_id.as_bytes()).is_ok(),
        Err(_) => false,
    };
    Ok(vec![Event::new(
        "test",
        "NetcatReport",
        json!({ "sent": sent }),
    )])
}

weir_plugin_sdk::plugin!(transform);
