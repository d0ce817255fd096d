//! Fault plugin: tries to reach outside its sandbox — a file, an environment variable,
//! its arguments, a TCP socket, an HTTP request, the clock — and returns one event
//! reporting what each attempt got.

use std::io::{Read, Write};

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
    let socket = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected".to_owned(),
        Err(e) => format!("denied: {e}"),
    };
    let http = match std::net::TcpStream::connect("93.184.216.34:80") {
        Ok(mut s) => {
            let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n");
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            format!("got {} bytes", buf.len())
        }
        Err(e) => format!("denied: {e}"),
    };
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
            "socket": socket,
            "http": http,
            "clockSecs": clock,
        }),
    )])
}

weir_plugin_sdk::plugin!(transform);
