//! The `weir` command as an installed binary meets it: `--version`, shell completions, AWS
//! configuration that is missing, and manifests EventBridge's default quotas would refuse.

use std::process::Command;

use crate::support::{plugin, root, stderr_text, weir_output};

/// An instance-metadata service on this machine that refuses every request (403), as the
/// service does where it is disabled or the caller may not use it: it stands for a machine
/// where IMDS gives nothing, and makes the SDK's providers warn at length as they do there.
fn refusing_metadata_service() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 9\r\nconnection: close\r\n\r\nforbidden",
            );
        }
    });
    format!("http://{address}")
}

/// `weir run --publish` on the example with nothing but PATH and an empty HOME (no
/// credentials, no profile), `extra` added, and the refusing metadata service.
fn publish_without_configuration(extra: &[(&str, &str)]) -> std::process::Output {
    plugin("mapping");
    plugin("salesforce-account");
    let home = tempfile::tempdir().expect("an empty HOME");
    let imds = refusing_metadata_service();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args([
            "run",
            "--publish",
            "--manifest",
            "examples/weir.toml",
            "--event",
            "examples/events/customers.json",
            "--dead-letter-dir",
        ])
        .arg(home.path().join("dead-letters"))
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds);
    for (k, v) in extra {
        command.env(k, v);
    }
    command.output().expect("weir runs")
}

#[test]
fn publish_with_no_region_prints_one_line_naming_it_and_exits_2() {
    let out = publish_without_configuration(&[]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "exactly one line: {err}");
    assert!(
        err.contains("no AWS region") && err.contains("AWS_REGION"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn publish_with_no_credentials_prints_one_line_naming_them_and_exits_2() {
    let out = publish_without_configuration(&[("AWS_REGION", "eu-west-1")]);
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "exactly one line: {err}");
    assert!(
        err.contains("no AWS credentials") && err.contains("AWS_ACCESS_KEY_ID"),
        "{err}"
    );
    // The SDK's own warnings come back when asked for.
    let asked = publish_without_configuration(&[("AWS_REGION", "eu-west-1"), ("RUST_LOG", "warn")]);
    assert!(
        stderr_text(&asked).lines().count() > 1,
        "{}",
        stderr_text(&asked)
    );
}

#[test]
fn version_names_the_plugin_contracts_and_wasmtime() {
    let out = weir_output(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr_text(&out));
    for part in ["weir:transform@0.2.0", "weir:transform@0.1.0", "wasmtime "] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = weir_output(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {}", stderr_text(&out));
        assert!(!text.is_empty(), "{shell}");
        for sub in [
            "decode",
            "run",
            "backfill",
            "check",
            "compile",
            "redrive",
            "infra",
            "new",
            "test",
            "completions",
        ] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = weir_output(&["completions", "powershell"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn infra_warns_of_the_rules_per_bus_quota_at_301_webhooks_and_still_prints_the_template() {
    let dir = tempfile::tempdir().expect("a folder");
    let mut text = String::from(
        "event_bus = \"bus\"\n[plugins.p]\npath = \"p.wasm\"\n[[routes]]\ntable = \"T\"\nsource = \"s\"\ntenant = { attribute = \"t\" }\n[tenants.default]\nplugin = \"p\"\n",
    );
    for i in 0..301 {
        text.push_str(&format!(
            "[destinations.tenant-{i}]\nendpoint = \"https://hooks.example.com/t{i}\"\nmethod = \"POST\"\ndetail_types = [\"Changed\"]\nauth = {{ type = \"none\" }}\n"
        ));
    }
    let manifest = dir.path().join("weir.toml");
    std::fs::write(&manifest, text).expect("written");
    let manifest = manifest.to_string_lossy().into_owned();
    let out = weir_output(&["infra", "--manifest", &manifest]);
    let err = stderr_text(&out);
    assert!(out.status.success(), "a warning, not an error: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("warning") && err.contains("300 rules per event bus"),
        "{err}"
    );
    assert!(err.contains("$.detail.metadata.tenant"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("AWSTemplateFormatVersion"));

    // weir check says the same on stderr; the plugin it names is missing, so it fails for
    // that, not for the quota.
    let out = weir_output(&["check", "--manifest", &manifest]);
    let err = stderr_text(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("300 rules per event bus")),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("300 rules"),
        "the warning is not a problem"
    );
}
