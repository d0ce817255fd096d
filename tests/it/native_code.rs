//! Native code runs only as far as the operator said: the two attacks of issue 12, done as an
//! attacker would with the real `weir` binary and real plugins, and the good paths.
//!
//! The pinned plugin is `mapping` (entries of detail type `CustomerChanged`); the attacker's
//! code is the `echo-state` plugin compiled by weir (entries of detail type `EchoState`).
//! Each attack is shown to be live by a control: the same planted file *is* run where weir
//! is told to trust it, so only the trust rule stands between it and the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{plugin, root, stderr_text};
use sha2::Digest as _;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn weir(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(root())
        .env("WEIR_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

/// `weir run` of the example event, with its compiled-code cache in `cache`.
fn run(manifest: &Path, cache: &Path) -> Output {
    let letters = manifest.with_extension("letters");
    weir(
        &[
            "run",
            "--manifest",
            manifest.to_str().expect("utf-8"),
            "--event",
            "examples/events/customers.json",
            "--dead-letter-dir",
            letters.to_str().expect("utf-8"),
        ],
        cache,
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The detail types of the entries printed, one per line.
fn detail_types(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).expect("entry is JSON");
            entry["DetailType"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// A manifest in `dir` running `wasm` (pinned to its own sha256) for tenant globex, with
/// `extra` lines under its `[plugins.mapping]`.
fn manifest(dir: &Path, name: &str, wasm: &Path, extra: &str) -> PathBuf {
    let pin = sha256(&std::fs::read(wasm).expect("plugin"));
    let text = format!(
        "event_bus = \"trust\"\n[plugins.mapping]\npath = {:?}\nsha256 = \"{pin}\"\n{extra}\
         [[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = {{ attribute = \"tenantId\" }}\n\
         [tenants.globex]\nplugin = \"mapping\"\n\
         config = {{ detail_type = \"CustomerChanged\", fields = {{ Name = \"/name\" }} }}\n",
        wasm.display().to_string()
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("manifest");
    path
}

fn private_dir(path: PathBuf) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .expect("mkdir");
    path
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The honest output: the pinned plugin alone, compiled afresh.
fn honest(dir: &Path, manifest: &Path) -> Output {
    let out = run(manifest, &private_dir(dir.join("honest-cache")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let types = detail_types(&out);
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "CustomerChanged"),
        "{types:?}"
    );
    out
}

/// The pinned plugin, `mapping`, in a temp dir with a manifest pinning its `.wasm`, and the
/// output it gives alone.
struct Victim {
    dir: tempfile::TempDir,
    wasm: PathBuf,
    plugin_sha: String,
    manifest: PathBuf,
    honest: Output,
}

fn victim() -> Victim {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("mapping.wasm");
    std::fs::copy(plugin("mapping"), &wasm).expect("copy");
    let plugin_sha = sha256(&std::fs::read(&wasm).expect("read"));
    let manifest = manifest(dir.path(), "weir.toml", &wasm, "");
    let honest = honest(dir.path(), &manifest);
    Victim {
        dir,
        wasm,
        plugin_sha,
        manifest,
        honest,
    }
}

#[test]
fn a_forged_cwasm_beside_a_pinned_plugin_is_refused_and_the_pinned_plugin_runs() {
    let Victim {
        dir,
        wasm,
        plugin_sha,
        manifest: unpinned,
        honest,
    } = victim();

    // The attacker compiles another plugin with `weir compile`, rewrites the trailer to name
    // the pinned plugin, and puts the file beside it as mapping.cwasm.
    let evil_dir = private_dir(dir.path().join("attacker"));
    let evil_wasm = evil_dir.join("mapping.wasm");
    std::fs::copy(plugin("echo-state"), &evil_wasm).expect("copy");
    let out = weir(
        &["compile", evil_wasm.to_str().expect("utf-8")],
        &dir.path().join("unused-cache"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let mut forged = std::fs::read(evil_dir.join("mapping.cwasm")).expect("compiled");
    let body_end = forged[..forged.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("a trailer line");
    forged.truncate(body_end);
    forged.extend_from_slice(format!("\nweir-cwasm-2 {plugin_sha}\n").as_bytes());
    let planted = dir.path().join("mapping.cwasm");
    std::fs::write(&planted, &forged).expect("plant");

    // The manifest pins the .wasm only: the .cwasm is refused, by name, and the pinned
    // plugin's own entries come out.
    let out = run(&unpinned, &private_dir(dir.path().join("cache-1")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    let err = stderr_text(&out);
    assert!(
        err.contains(&format!(
            "{} not used: the manifest does not pin it (compiled_sha256)",
            planted.display()
        )),
        "{err}"
    );

    // The manifest pins the honest .cwasm (as `weir compile --manifest` writes it): the forged
    // one does not match, and is refused by name.
    let honest_cwasm = {
        let out = weir(
            &[
                "compile",
                wasm.to_str().expect("utf-8"),
                "--out-dir",
                evil_dir.to_str().expect("utf-8"),
            ],
            &dir.path().join("unused-cache"),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
        std::fs::read(evil_dir.join("mapping.cwasm")).expect("compiled")
    };
    let pinned = manifest(
        dir.path(),
        "pinned.toml",
        &wasm,
        &format!("compiled_sha256 = \"{}\"\n", sha256(&honest_cwasm)),
    );
    let out = run(&pinned, &private_dir(dir.path().join("cache-2")));
    assert_eq!(stdout(&out), stdout(&honest));
    let err = stderr_text(&out);
    assert!(
        err.contains(&format!(
            "{} not used: its sha256 is {}, but the manifest pins {}",
            planted.display(),
            sha256(&forged),
            sha256(&honest_cwasm)
        )),
        "{err}"
    );

    // Control: the forged file is live native code. Were it pinned, the other plugin's code
    // would run in the pinned plugin's place, which is what the trailer check alone allowed.
    let trusting = manifest(
        dir.path(),
        "trusting.toml",
        &wasm,
        &format!("compiled_sha256 = \"{}\"\n", sha256(&forged)),
    );
    let out = run(&trusting, &private_dir(dir.path().join("cache-3")));
    let types = detail_types(&out);
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "EchoState"),
        "{types:?} {}",
        stderr_text(&out)
    );
}

#[test]
fn a_planted_entry_in_a_compiled_code_cache_others_can_write_is_never_run() {
    let Victim {
        dir,
        plugin_sha,
        manifest: victim,
        honest,
        ..
    } = victim();

    // The attacker's native code: echo-state, compiled by weir into a cache of its own.
    let evil_wasm = dir.path().join("echo-state.wasm");
    std::fs::copy(plugin("echo-state"), &evil_wasm).expect("copy");
    let evil_cache = private_dir(dir.path().join("attacker-cache"));
    let out = run(
        &manifest(dir.path(), "evil.toml", &evil_wasm, ""),
        &evil_cache,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let entry = std::fs::read_dir(&evil_cache)
        .expect("cache")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".cwasm"))
        .expect("weir wrote a cache entry");
    let engine_tag = entry
        .strip_suffix(".cwasm")
        .and_then(|n| n.rsplit_once('-'))
        .map(|(_, tag)| tag.to_owned())
        .expect("<sha256>-<engine>.cwasm");

    // On a shared machine the attacker creates the cache folder first, writable by all,
    // and plants that code under the pinned plugin's name.
    let shared = dir.path().join("shared-cache");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    let planted = shared.join(format!("{plugin_sha}-{engine_tag}.cwasm"));
    std::fs::copy(evil_cache.join(&entry), &planted).expect("plant");
    chmod(&planted, 0o600);

    let out = run(&victim, &shared);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    let err = stderr_text(&out);
    assert!(
        err.contains("compiled-code cache not used, running without a disk cache")
            && err.contains(&format!(
                "{} is writable by other users (mode 777)",
                shared.display()
            )),
        "{err}"
    );
    assert!(planted.exists(), "weir leaves the folder as it found it");

    // Control: the planted entry is well-formed. In a folder only this user can write, weir
    // trusts what is there, and the attacker's code runs: only the folder check stopped it.
    chmod(&shared, 0o700);
    let out = run(&victim, &shared);
    let types = detail_types(&out);
    assert!(
        !types.is_empty() && types.iter().all(|t| t == "EchoState"),
        "{types:?} {}",
        stderr_text(&out)
    );

    // A folder owned by another user is refused too, however tight its mode. (Only root can
    // give a folder away; CI runs as root.)
    let me = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(dir.path()).expect("meta").uid()
    };
    if me == 0 {
        chmod(&shared, 0o755);
        std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).expect("chown");
        let out = run(&victim, &shared);
        assert_eq!(stdout(&out), stdout(&honest));
        let err = stderr_text(&out);
        assert!(
            err.contains(&format!(
                "{} is owned by uid 65534, not by this user (uid 0)",
                shared.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn compile_with_a_manifest_writes_both_pins_and_the_pinned_cwasm_runs_with_no_compile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("mapping.wasm");
    std::fs::copy(plugin("mapping"), &wasm).expect("copy");
    let m = dir.path().join("weir.toml");
    std::fs::write(
        &m,
        "# the operators' manifest\nevent_bus = \"trust\"\n\n[plugins.mapping]\npath = \"mapping.wasm\"   # kept\n\n\
         [[routes]]\ntable = \"Customers\"\nsource = \"weir.customers\"\ntenant = { attribute = \"tenantId\" }\n\
         [tenants.globex]\nplugin = \"mapping\"\n\
         config = { detail_type = \"CustomerChanged\", fields = { Name = \"/name\" } }\n",
    )
    .expect("manifest");
    let honest = honest(dir.path(), &m);

    let out = weir(
        &["compile", "--manifest", m.to_str().expect("utf-8")],
        &dir.path().join("unused-cache"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    let cwasm = std::fs::read(dir.path().join("mapping.cwasm")).expect("compiled beside it");
    let text = std::fs::read_to_string(&m).expect("manifest");
    for line in [
        "# the operators' manifest".to_owned(),
        "path = \"mapping.wasm\"   # kept".to_owned(),
        format!(
            "sha256 = \"{}\"",
            sha256(&std::fs::read(&wasm).expect("wasm"))
        ),
        format!("compiled_sha256 = \"{}\"", sha256(&cwasm)),
    ] {
        assert!(text.contains(&line), "{text} lacks {line}");
    }

    // Run from a fresh cache: the pinned .cwasm is used, nothing is compiled (a compile would
    // warn, and would write its result into the cache).
    let cache = private_dir(dir.path().join("fresh-cache"));
    let out = run(&m, &cache);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    assert!(
        !stderr_text(&out).contains("compil"),
        "{}",
        stderr_text(&out)
    );
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 0);

    // The same run without the pin compiles, and says why the .cwasm was not used.
    let unpinned: String = text
        .lines()
        .filter(|l| !l.starts_with("compiled_sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&m, unpinned).expect("manifest");
    let cache = private_dir(dir.path().join("fresh-cache-2"));
    let out = run(&m, &cache);
    assert_eq!(stdout(&out), stdout(&honest));
    assert!(
        stderr_text(&out).contains("does not pin it (compiled_sha256)")
            && stderr_text(&out).contains("compiling the plugin instead"),
        "{}",
        stderr_text(&out)
    );
    assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 1);
}

/// `weir run` of the example event with the compiled-code cache where the user's
/// environment puts it: under `xdg_cache_home` (no `WEIR_CACHE_DIR`).
fn run_with_xdg(manifest: &Path, xdg_cache_home: &Path) -> Output {
    let letters = manifest.with_extension("letters");
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "run",
            "--manifest",
            manifest.to_str().expect("utf-8"),
            "--event",
            "examples/events/customers.json",
            "--dead-letter-dir",
            letters.to_str().expect("utf-8"),
        ])
        .current_dir(root())
        .env_remove("WEIR_CACHE_DIR")
        .env_remove("AWS_LAMBDA_FUNCTION_NAME")
        .env("XDG_CACHE_HOME", xdg_cache_home)
        .env_remove("RUST_LOG")
        .output()
        .expect("weir runs")
}

#[test]
fn a_cache_in_a_directory_others_can_write_without_the_sticky_bit_is_not_used() {
    let Victim {
        dir,
        manifest,
        honest,
        ..
    } = victim();
    // XDG_CACHE_HOME in a directory every user can write, with no sticky bit: another user
    // can rename weir's own private folder away and put theirs in its place between weir's
    // check and its read (issue 23). weir refuses such a cache once, and runs without it.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    let out = run_with_xdg(&manifest, &shared);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    let err = stderr_text(&out);
    assert!(
        err.contains("compiled-code cache not used, running without a disk cache")
            && err.contains(&format!(
                "{} is writable by other users (mode 777) without the sticky bit, so they can swap {}",
                shared.display(),
                shared.join("weir").display()
            )),
        "{err}"
    );
    assert_eq!(
        err.matches("compiled-code cache not used").count(),
        1,
        "{err}"
    );
    let entries = |d: &Path| std::fs::read_dir(d).map_or(0, |r| r.count());
    assert_eq!(entries(&shared.join("weir")), 0, "nothing cached there");

    // Control: with the sticky bit (as /tmp has), others cannot rename weir's folder, and
    // the cache is used: the compiled plugin is written there.
    chmod(&shared, 0o1777);
    let out = run_with_xdg(&manifest, &shared);
    assert_eq!(stdout(&out), stdout(&honest));
    assert!(
        !stderr_text(&out).contains("compiled-code cache not used"),
        "{}",
        stderr_text(&out)
    );
    assert_eq!(entries(&shared.join("weir")), 1);
}

#[test]
fn compile_with_a_manifest_refuses_a_plugin_that_no_longer_matches_its_pin() {
    let Victim {
        dir,
        wasm,
        plugin_sha,
        manifest,
        ..
    } = victim();
    // The plugin is replaced with other code after it was pinned.
    std::fs::copy(plugin("echo-state"), &wasm).expect("replace");
    let other_sha = sha256(&std::fs::read(&wasm).expect("read"));
    let before = std::fs::read(&manifest).expect("manifest");

    let out = weir(
        &["compile", "--manifest", manifest.to_str().expect("utf-8")],
        &dir.path().join("unused-cache"),
    );
    let err = stderr_text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "plugins.mapping: {} has sha256 {other_sha}, but the manifest pins {plugin_sha}",
            wasm.display()
        )) && err.contains("nothing compiled and no pin written"),
        "{err}"
    );
    // Nothing moved: the pin stays, no native code was written for the other plugin.
    assert_eq!(std::fs::read(&manifest).expect("manifest"), before);
    assert!(!dir.path().join("mapping.cwasm").exists());
    // And weir run still refuses the changed plugin by its pin.
    let out = run(&manifest, &private_dir(dir.path().join("cache")));
    assert!(
        stderr_text(&out).contains(&format!("but the manifest pins {plugin_sha}")),
        "{}",
        stderr_text(&out)
    );
    assert!(!stdout(&out).contains("EchoState"), "{}", stdout(&out));
}

#[test]
fn a_cwasm_that_is_not_a_regular_file_is_refused_without_reading_it() {
    use std::io::{Read as _, Write as _};
    let Victim {
        dir, wasm, honest, ..
    } = victim();
    // The manifest names and pins a .cwasm; a FIFO stands at that name.
    let cwasm = dir.path().join("mapping.cwasm");
    let named = manifest(
        dir.path(),
        "named.toml",
        &wasm,
        &format!(
            "compiled = \"mapping.cwasm\"\ncompiled_sha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    );
    let status = Command::new("mkfifo").arg(&cwasm).status().expect("mkfifo");
    assert!(status.success());
    // The test holds the FIFO open for writing and offers more than a pipe holds, so code
    // that reads it is not left waiting: it gets these bytes and an end. Code that never
    // reads it leaves them all in the pipe, for the test to take back.
    const OFFERED: usize = 200 * 1024;
    let writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&cwasm)
        .expect("open the FIFO");
    let feeder = std::thread::spawn(move || {
        let mut writer = writer;
        writer.write_all(&vec![b'x'; OFFERED]).expect("fed");
    });

    let out = run(&named, &private_dir(dir.path().join("cache-fifo")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    let err = stderr_text(&out);
    assert!(
        err.contains(&format!(
            "{}: not read: it is a FIFO, not a regular file",
            cwasm.display()
        )),
        "{err}"
    );
    // weir took none of the bytes offered.
    let mut left = Vec::new();
    std::fs::File::open(&cwasm)
        .expect("open to drain")
        .read_to_end(&mut left)
        .expect("drain");
    feeder.join().expect("feeder");
    assert_eq!(left.len(), OFFERED, "weir read from the FIFO");

    // A link to a device that never ends: not followed (it grew weir past 1 GB before).
    std::fs::remove_file(&cwasm).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &cwasm).expect("link");
    let out = run(&named, &private_dir(dir.path().join("cache-zero")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    assert!(
        stderr_text(&out).contains(&format!(
            "{}: not read: it is a symbolic link",
            cwasm.display()
        )),
        "{}",
        stderr_text(&out)
    );

    // A regular file past the cap (sparse: no disk used) is refused by its size, unread.
    std::fs::remove_file(&cwasm).expect("rm");
    std::fs::File::create(&cwasm)
        .and_then(|f| f.set_len((256 << 20) + 1))
        .expect("sparse");
    let out = run(&named, &private_dir(dir.path().join("cache-huge")));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert_eq!(stdout(&out), stdout(&honest));
    assert!(
        stderr_text(&out).contains(&format!(
            "{} not used: it is 268435457 bytes, more than the cap of 268435456 bytes",
            cwasm.display()
        )),
        "{}",
        stderr_text(&out)
    );
}

/// An S3 client for `endpoint` (moto, or a local stand-in), with path-style addressing.
fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&crate::support::sdk_config(endpoint))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_object_over_the_cap_is_refused_by_its_declared_length() {
    let moto = crate::support::Moto::start();
    let client = s3_client(&moto.endpoint());
    client
        .create_bucket()
        .bucket("trust")
        .send()
        .await
        .expect("bucket");
    client
        .put_object()
        .bucket("trust")
        .key("plugins/p.cwasm")
        .body(vec![7u8; 2048].into())
        .send()
        .await
        .expect("put");
    let store = weir_aws::store::ObjectStore::with_s3(client);
    let location = weir_core::location::Location::parse("s3://trust/plugins/p.cwasm").expect("url");
    let err = store
        .read_at_most(&location, 1024)
        .await
        .expect_err("over the cap");
    assert_eq!(
        format!("{err:#}"),
        "s3://trust/plugins/p.cwasm: not read: it is 2048 bytes, more than the cap of 1024 bytes"
    );
    let (bytes, _) = store
        .read_at_most(&location, 2048)
        .await
        .expect("at the cap");
    assert_eq!(bytes, vec![7u8; 2048]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_body_with_no_length_is_cut_off_at_the_cap() {
    use std::io::{BufRead as _, Write as _};
    // A local endpoint standing for an S3 (or a proxy in front of it) that answers GetObject
    // with no Content-Length and a body that never ends, which moto cannot do. It sends
    // until weir hangs up, and says how much it sent.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("a request");
        let mut request = std::io::BufReader::new(conn.try_clone().expect("clone"));
        let mut line = String::new();
        while request.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let mut conn = conn;
        conn.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"endless\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n",
        )
        .expect("head");
        let mut chunk = format!("{:x}\r\n", 4096).into_bytes();
        chunk.extend_from_slice(&[b'x'; 4096]);
        chunk.extend_from_slice(b"\r\n");
        let mut sent: u64 = 0;
        while conn.write_all(&chunk).is_ok() {
            sent += 4096;
        }
        sent
    });
    let store =
        weir_aws::store::ObjectStore::with_s3(s3_client(&format!("http://127.0.0.1:{port}")));
    let location = weir_core::location::Location::parse("s3://trust/p.cwasm").expect("url");
    let err = store
        .read_at_most(&location, 1 << 20)
        .await
        .expect_err("cut off");
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("s3://trust/p.cwasm: not read: it is ")
            && msg.ends_with("bytes, more than the cap of 1048576 bytes"),
        "{msg}"
    );
    drop(store);
    let sent = tokio::task::spawn_blocking(move || server.join().expect("server"))
        .await
        .expect("joined");
    // What was sent is the cap plus what was in flight when weir stopped reading.
    assert!((1 << 20..64 << 20).contains(&sent), "sent {sent} bytes");
}
