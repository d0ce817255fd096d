//! Fault plugin: tries to reach outside its sandbox — a file, a directory, an environment
//! variable, its arguments, the clock — and returns one event reporting what each attempt
//! got. (The network is `netcat`'s: a plugin that imports sockets is refused at load.)

use std::io::Read;

use weir_plugin_sdk::{Error, Event, Record, Tenant, json};

fn transform(record: &Record, _tenant: &Tenant) -> Result<Vec<Event>, Error> {
    let file = match std::fs::File::open("/etc/passwd") {
        Ok(mut f) => {
            let mut s = String::new();
            let _ = f.read_to_string(&mut s);
            format!("read {} bytes", s.len())
        }
        Err(e) => format!("denied: {e}"),
    };
    let cwd = match std::fs::read_dir(".") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("denied: {e}"),
    };
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let home = std::env::var("HOME").map_err(|e| e.to_string());
    let args: Vec<String> = std::env::args().collect();
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    Ok(vec![Event::new(
        "test",
        "SnoopReport",
        json!({
            "eventId": record.event_id,
            "file": file,
            "listDir": cwd,
            "env": env,
            "home": match home { Ok(h) => h, Err(e) => format!("denied: {e}") },
            "args": args,
            "clockSecs": clock,
        }),
    )])
}

weir_plugin_sdk::plugin!(transform);
