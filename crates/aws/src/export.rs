//! A DynamoDB export to S3 in `DYNAMODB_JSON` format (or a local copy of its folder), read
//! for a backfill: a point-in-time copy of the table that costs it no read capacity.
//!
//! The export's folder, `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`, holds
//! `manifest-summary.json` (the table's ARN, the item count, where the file list is),
//! `manifest-files.json` (one JSON object per line, each naming a data file by
//! `dataFileS3Key` with its `itemCount`), and the data files: gzipped JSON lines, one
//! `{"Item": {...}}` per item, the item in DynamoDB's typed JSON.

use std::io::{BufRead as _, Read};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest line of a data file weir holds. A DynamoDB item is at most 400 KB, but its
/// typed JSON can be several times that (base64 for binary, `\u00XX` for control
/// characters: up to 6 bytes a byte); a longer line is refused, with the file and line named.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// The longest `manifest-summary.json` read (real ones are under 1 KB).
const MAX_SUMMARY_BYTES: u64 = 1 << 20;

/// The longest `manifest-files.json` read: about 200 bytes a data file, so room for
/// hundreds of thousands of files.
const MAX_FILE_LIST_BYTES: u64 = 64 << 20;

/// Items read ahead of the pipeline: with [`MAX_LINE_BYTES`], this bounds what a data file's
/// reader holds to a few lines, however large the file is once decompressed.
const ITEMS_AHEAD: usize = 4;

/// Where exports are read from: S3 with the SDK's standard configuration and retries.
#[derive(Clone)]
pub struct Exports {
    client: aws_sdk_s3::Client,
}

impl Exports {
    /// Exports read with `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Exports {
            client: crate::client::s3(sdk),
        }
    }

    /// The export at `url`: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`, or a local copy of
    /// that folder (a directory path).
    pub fn open(&self, url: &str) -> anyhow::Result<ExportSource> {
        if url.starts_with("s3://") {
            ExportSource::new(self.client.clone(), url)
        } else {
            ExportSource::local(url)
        }
    }
}

/// One export's folder: in S3, or a copy of it on this machine.
#[derive(Clone)]
pub struct ExportSource {
    place: Place,
    folder: String,
}

#[derive(Clone)]
enum Place {
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
    /// A local copy: the export folder's files, `data/` included, under this directory.
    Dir(std::path::PathBuf),
}

/// What `manifest-summary.json` says that a backfill needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    /// The exported table, which routes every item.
    pub table_arn: String,
    /// Items in the export.
    #[serde(default)]
    pub item_count: Option<u64>,
    /// `DYNAMODB_JSON` (the only format read here) or `ION`.
    #[serde(default)]
    pub export_format: Option<String>,
    /// The key of `manifest-files.json`.
    #[serde(default)]
    pub manifest_files_s3_key: Option<String>,
}

/// One data file of the export.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataFile {
    /// Its key in the export's bucket.
    pub data_file_s3_key: String,
    /// Items in it.
    #[serde(default)]
    pub item_count: Option<u64>,
}

impl ExportSource {
    /// The export at `url`: `s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID`.
    pub fn new(client: aws_sdk_s3::Client, url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("{url}: an export is an s3:// URL"))?;
        let (bucket, folder) = rest
            .split_once('/')
            .with_context(|| format!("{url}: no folder after the bucket"))?;
        if !folder.contains("AWSDynamoDB/") {
            bail!("{url}: expected s3://BUCKET/PREFIX/AWSDynamoDB/EXPORT_ID");
        }
        Ok(ExportSource {
            place: Place::S3 {
                client,
                bucket: bucket.to_owned(),
            },
            folder: folder.trim_end_matches('/').to_owned(),
        })
    }

    /// A local copy of an export's folder (`manifest-summary.json`, `manifest-files.json`,
    /// `data/`): its files are found by name, wherever the export's keys said they were.
    pub fn local(dir: &str) -> anyhow::Result<Self> {
        let dir = std::path::PathBuf::from(dir);
        if !dir.join("manifest-summary.json").is_file() {
            bail!(
                "{}: no manifest-summary.json (not an export's folder)",
                dir.display()
            );
        }
        Ok(ExportSource {
            place: Place::Dir(dir),
            folder: String::new(),
        })
    }

    /// A small object of the export (its summary or file list), refused past `max` bytes.
    async fn object(&self, key: &str, max: u64) -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        match self.open(key).await? {
            Body::S3(mut body) => {
                while let Some(chunk) = body
                    .try_next()
                    .await
                    .with_context(|| format!("cannot read {}", self.describe(key)))?
                {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() as u64 > max {
                        break;
                    }
                }
            }
            Body::File(file, path) => {
                file.take(max + 1)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
        }
        if bytes.len() as u64 > max {
            bail!("{}: larger than {max} bytes", self.describe(key));
        }
        Ok(bytes)
    }

    /// The object `key` opened once: an S3 body, or a local file (a regular file, checked
    /// on the handle that is then read).
    async fn open(&self, key: &str) -> anyhow::Result<Body> {
        match &self.place {
            Place::S3 { client, bucket } => {
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", crate::client::describe_sdk_error(&e)))
                    .with_context(|| format!("cannot read {}", self.describe(key)))?;
                Ok(Body::S3(out.body))
            }
            Place::Dir(dir) => {
                let path = dir.join(key);
                let file = std::fs::File::open(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let meta = file
                    .metadata()
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if !meta.is_file() {
                    bail!("{}: not a regular file", path.display());
                }
                Ok(Body::File(file, path))
            }
        }
    }

    /// Where a data file named by `key` (as `manifest-files.json` or a task names it) is:
    /// a key, never a path. In S3 it must be under this export's `data/`; in a local copy
    /// it is found in `data/` by its file name. `..`, `.`, empty parts, absolute keys,
    /// backslashes and keys outside `data/` are refused, with the key named.
    pub fn data_file_key(&self, key: &str) -> anyhow::Result<String> {
        let refuse = |why: &str| -> anyhow::Result<String> {
            bail!(
                "dataFileS3Key {key:?}: {why}; a data file's key is PREFIX/AWSDynamoDB/EXPORT_ID/data/NAME"
            )
        };
        if key.starts_with('/') {
            return refuse("an absolute path, not a key");
        }
        if key.contains('\\') || key.contains('\0') {
            return refuse("a backslash or NUL is not part of an export's keys");
        }
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return refuse("empty, `.` and `..` parts are not part of an export's keys");
        }
        match &self.place {
            Place::S3 { .. } => {
                let name = key
                    .strip_prefix(&self.folder)
                    .and_then(|rest| rest.strip_prefix("/data/"));
                match name {
                    Some(name) if !name.contains('/') => Ok(key.to_owned()),
                    _ => refuse(&format!(
                        "not a file in this export's data/ ({}/data/)",
                        self.folder
                    )),
                }
            }
            Place::Dir(_) => {
                // `PREFIX/AWSDynamoDB/ID/data/NAME` as the export in S3 named it, or
                // `data/NAME` within the folder.
                let name = key
                    .strip_prefix("data/")
                    .or_else(|| key.rsplit_once("/data/").map(|(_, name)| name));
                match name {
                    Some(name) if !name.contains('/') => Ok(format!("data/{name}")),
                    _ => refuse("not a file in the export's data/"),
                }
            }
        }
    }

    /// Where `key` is, for messages: escaped, as keys come from the export's files.
    fn describe(&self, key: &str) -> String {
        match &self.place {
            Place::S3 { bucket, .. } => format!("s3://{bucket}/{}", key.escape_debug()),
            Place::Dir(dir) => dir
                .join(key)
                .display()
                .to_string()
                .escape_debug()
                .to_string(),
        }
    }

    /// The export's summary; an export in another format than `DYNAMODB_JSON` is refused.
    pub async fn summary(&self) -> anyhow::Result<ExportSummary> {
        let key = self.key("manifest-summary.json");
        let summary: ExportSummary =
            serde_json::from_slice(&self.object(&key, MAX_SUMMARY_BYTES).await?)
                .with_context(|| format!("{}: not an export summary", self.describe(&key)))?;
        match summary.export_format.as_deref() {
            None | Some("DYNAMODB_JSON") => Ok(summary),
            Some(other) => bail!("the export is in {other}; weir reads DYNAMODB_JSON exports"),
        }
    }

    /// Its data files, in the order `manifest-files.json` lists them.
    pub async fn files(&self, summary: &ExportSummary) -> anyhow::Result<Vec<DataFile>> {
        let key = match (&self.place, &summary.manifest_files_s3_key) {
            (Place::S3 { .. }, Some(k)) => k.clone(),
            _ => self.key("manifest-files.json"),
        };
        let text = String::from_utf8(self.object(&key, MAX_FILE_LIST_BYTES).await?)
            .with_context(|| format!("{} is not UTF-8", self.describe(&key)))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let file: DataFile = serde_json::from_str(l).with_context(|| {
                    format!(
                        "{} line {}: not a data-file line",
                        self.describe(&key),
                        i + 1
                    )
                })?;
                self.data_file_key(&file.data_file_s3_key)
                    .with_context(|| format!("{} line {}", self.describe(&key), i + 1))?;
                Ok(file)
            })
            .collect()
    }

    /// A file of the export's folder by name.
    fn key(&self, name: &str) -> String {
        if self.folder.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.folder)
        }
    }

    /// A data file's items, each as typed JSON text, in file order, read as they are
    /// needed: the gzip is decompressed as a stream, a few lines ahead, so memory stays
    /// bounded however large the file is. Its key is checked first ([`Self::data_file_key`]).
    pub async fn items(&self, file: &DataFile) -> anyhow::Result<DataFileItems> {
        let key = self.data_file_key(&file.data_file_s3_key)?;
        let name = format!("{:?}", file.data_file_s3_key);
        let body = self.open(&key).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(ITEMS_AHEAD);
        let runtime = tokio::runtime::Handle::current();
        let reader: Box<dyn Read + Send> = match body {
            Body::S3(body) => Box::new(S3Read {
                runtime,
                body,
                chunk: Vec::new(),
                at: 0,
            }),
            Body::File(file, _) => Box::new(file),
        };
        tokio::task::spawn_blocking(move || read_lines(reader, &name, &tx));
        Ok(DataFileItems {
            rx,
            ahead: None,
            ended: false,
        })
    }
}

/// An object of the export, opened once.
enum Body {
    S3(aws_sdk_s3::primitives::ByteStream),
    File(std::fs::File, std::path::PathBuf),
}

/// An S3 body read as a blocking `Read`, on a thread of its own (the decoder's).
struct S3Read {
    runtime: tokio::runtime::Handle,
    body: aws_sdk_s3::primitives::ByteStream,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for S3Read {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.runtime.block_on(self.body.try_next()) {
                Ok(Some(bytes)) => {
                    self.chunk = bytes.to_vec();
                    self.at = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Decompresses `reader` and sends each line's item, at most [`MAX_LINE_BYTES`] a line,
/// until the file ends, a line is refused, or the receiver is gone. `name` is the file's key
/// (quoted) for errors.
fn read_lines(
    reader: Box<dyn Read + Send>,
    name: &str,
    tx: &tokio::sync::mpsc::Sender<anyhow::Result<String>>,
) {
    let mut lines = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(reader));
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        let read = (&mut lines)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line);
        let item = match read {
            Ok(0) => return,
            Ok(_) if line.len() > MAX_LINE_BYTES => Err(anyhow::anyhow!(
                "{name} line {number}: longer than {MAX_LINE_BYTES} bytes (a DynamoDB item's typed JSON is far shorter)"
            )),
            Ok(_) => match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => item_of_line(text)
                    .with_context(|| format!("{name} line {number}: not {{\"Item\": ...}}")),
                Err(_) => Err(anyhow::anyhow!("{name} line {number}: not UTF-8")),
            },
            Err(e) => Err(anyhow::Error::new(e).context(format!("{name}: not gzipped JSON lines"))),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

fn item_of_line(line: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(rename = "Item", borrow)]
        item: &'a RawValue,
    }
    Ok(serde_json::from_str::<Line<'_>>(line)?
        .item
        .get()
        .to_owned())
}

/// A data file's items, read a few ahead of use (see [`ExportSource::items`]).
pub struct DataFileItems {
    rx: tokio::sync::mpsc::Receiver<anyhow::Result<String>>,
    ahead: Option<anyhow::Result<String>>,
    ended: bool,
}

impl DataFileItems {
    /// The next item's typed JSON; `None` at the end of the file. After an error, nothing
    /// more.
    pub async fn next(&mut self) -> Option<anyhow::Result<String>> {
        let item = match self.ahead.take() {
            Some(item) => Some(item),
            None if self.ended => None,
            None => self.rx.recv().await,
        };
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        item
    }

    /// Whether no item follows (so a page can say it is the file's last).
    pub async fn at_end(&mut self) -> bool {
        if self.ahead.is_none() && !self.ended {
            self.ahead = self.rx.recv().await;
            if self.ahead.is_none() {
                self.ended = true;
            }
        }
        self.ahead.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the bytes this test binary holds, and the most it held: what a reader keeps
    /// in memory, measured rather than assumed.
    struct Counting;
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: every call goes to the system allocator unchanged; only counters are added.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as the caller's contract for `alloc`.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
            // SAFETY: as the caller's contract for `dealloc`.
            unsafe { System.dealloc(p, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
            // SAFETY: as the caller's contract for `realloc`.
            let q = unsafe { System.realloc(p, layout, new) };
            if !q.is_null() {
                let now = LIVE.fetch_add(new, Ordering::Relaxed) + new;
                PEAK.fetch_max(now, Ordering::Relaxed);
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            q
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// One of these tests at a time: the peak they measure is the whole process's.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// A folder of this test's own, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A local copy of an export whose one data file, `data/big.json.gz`, is `data`.
    fn local_export(data: &[u8]) -> (TempDir, ExportSource) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = TempDir(std::env::temp_dir().join(format!(
            "weir-export-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )));
        std::fs::create_dir(dir.path()).expect("tempdir");
        std::fs::create_dir(dir.path().join("data")).expect("data/");
        std::fs::write(dir.path().join("data/big.json.gz"), data).expect("write");
        std::fs::write(
            dir.path().join("manifest-summary.json"),
            r#"{"tableArn": "arn:aws:dynamodb:eu-west-1:1:table/T"}"#,
        )
        .expect("write");
        let export = ExportSource::local(dir.path().to_str().expect("utf-8")).expect("opens");
        (dir, export)
    }

    fn big_file() -> DataFile {
        DataFile {
            data_file_s3_key: "p/AWSDynamoDB/01-x/data/big.json.gz".into(),
            item_count: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_file_far_larger_than_memory_allows_is_read_in_bounded_memory() {
        // 1 MiB of 1 KiB items, gzipped once and repeated: 128 MiB once decompressed.
        let _alone = ONE_AT_A_TIME.lock().await;
        let pad = "x".repeat(1000);
        let mut block = String::new();
        for i in 0..1024 {
            block.push_str(&format!(
                "{{\"Item\":{{\"pk\":{{\"S\":\"k{i:04}\"}},\"pad\":{{\"S\":\"{pad}\"}}}}}}\n"
            ));
        }
        let member = gzip(block.as_bytes());
        let copies = 128;
        let data: Vec<u8> = member.repeat(copies);
        let decompressed = block.len() * copies;
        let (_dir, export) = local_export(&data);
        drop(data);
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut items = export.items(&big_file()).await.expect("opens");
        let mut count = 0usize;
        while let Some(item) = items.next().await {
            let item = item.expect("an item");
            assert!(item.starts_with("{\"pk\""), "{item}");
            count += 1;
        }
        let held = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        assert_eq!(count, 1024 * copies);
        assert!(decompressed > 128 << 20);
        // A few lines ahead, the decoder's window and a line buffer: never the file.
        assert!(
            held < 1 << 20,
            "{held} bytes held reading a file of {decompressed} bytes decompressed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_line_longer_than_an_item_can_be_is_refused_with_the_file_and_line() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let mut text = String::from("{\"Item\":{\"pk\":{\"S\":\"a\"}}}\n");
        text.push_str(&format!(
            "{{\"Item\":{{\"pk\":{{\"S\":\"{}\"}}}}}}\n",
            "y".repeat(MAX_LINE_BYTES)
        ));
        let (_dir, export) = local_export(&gzip(text.as_bytes()));
        let mut items = export.items(&big_file()).await.expect("opens");
        assert!(matches!(items.next().await, Some(Ok(_))));
        let err = items.next().await.expect("an error").expect_err("refused");
        let err = format!("{err:#}");
        assert!(
            err.contains("\"p/AWSDynamoDB/01-x/data/big.json.gz\" line 2: longer than"),
            "{err}"
        );
        assert!(items.next().await.is_none(), "nothing after an error");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_truncated_data_file_is_an_error_not_a_shorter_file() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("{{\"Item\":{{\"pk\":{{\"N\":\"{i}\"}}}}}}\n"));
        }
        let whole = gzip(text.as_bytes());
        let (_dir, export) = local_export(&whole[..whole.len() / 2]);
        let mut items = export.items(&big_file()).await.expect("opens");
        let mut last = None;
        while let Some(item) = items.next().await {
            last = Some(item);
        }
        let err = last.expect("something").expect_err("an error at the end");
        assert!(
            format!("{err:#}").contains("not gzipped JSON lines"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn a_data_file_key_is_a_key_never_a_path() {
        let _alone = ONE_AT_A_TIME.lock().await;
        let (dir, local) = local_export(b"");
        // Something outside data/ that a climbing key would reach.
        std::fs::write(dir.path().join("secret.json.gz"), gzip(b"{\"Item\":{}}\n")).expect("w");
        for key in [
            "p/AWSDynamoDB/01-x/data/../secret.json.gz",
            "p/AWSDynamoDB/01-x/data/../../../../etc/passwd",
            "data/../secret.json.gz",
            "/etc/passwd",
            "secret.json.gz",
            "p/AWSDynamoDB/01-x/manifest-summary.json",
            "p/AWSDynamoDB/01-x/data/sub/x.json.gz",
            "p/AWSDynamoDB/01-x/data/",
            "p/AWSDynamoDB/01-x/data//x.json.gz",
            "p\\\\..\\\\secret.json.gz",
        ] {
            let file = DataFile {
                data_file_s3_key: key.into(),
                item_count: None,
            };
            let err = match local.items(&file).await {
                Ok(_) => panic!("{key:?} was read"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(&format!("dataFileS3Key {key:?}")), "{err}");
        }
        assert_eq!(
            local
                .data_file_key("p/AWSDynamoDB/01-x/data/f.json.gz")
                .expect("a data file"),
            "data/f.json.gz"
        );

        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        let s3 = ExportSource::new(client, "s3://b/p/AWSDynamoDB/01-x").expect("an export");
        assert!(
            s3.data_file_key("p/AWSDynamoDB/01-x/data/f.json.gz")
                .is_ok()
        );
        for key in [
            "p/AWSDynamoDB/01-x/data/../manifest-summary.json",
            "p/AWSDynamoDB/01-x/manifest-summary.json",
            "p/AWSDynamoDB/02-other/data/f.json.gz",
            "secrets/prod.json",
            "/p/AWSDynamoDB/01-x/data/f.json.gz",
        ] {
            let err = s3.data_file_key(key).expect_err(key);
            assert!(err.to_string().contains(&format!("{key:?}")), "{err}");
        }
    }
}
