//! A run folder in object storage (feature `object-store`): `s3://bucket/prefix`, `gs://…`,
//! `az://…` or `file:///path`, through the `object_store` crate, with blocking calls for
//! kao's threads (docs/scale-out.md).
//!
//! - Credentials and endpoints come from the environment, as each store's `from_env`
//!   builder reads them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
//!   `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …). They are
//!   never shown: messages name the URL without user, password or query, and the problem.
//! - Requests that fail transiently (5xx, 429, timeouts, refused connections) are retried
//!   with exponential backoff ([`retry_config`]).
//! - A file is put whole when small, else in a multipart upload, which is aborted when a
//!   part fails, so no unfinished upload is left behind.
//! - Duplicate tasks of one shard exclude each other per video with a lease object
//!   ([`Leases`]), created with a conditional put and renewed while the video runs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

use crate::scale_out::remote::display_url;

/// Files up to this size are put in one request; larger ones in a multipart upload of parts
/// this size (S3's minimum part is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Uploads and downloads at once.
const CONCURRENCY: usize = 8;
/// Name of a video's lease object inside its partition.
pub const LEASE_FILE: &str = ".kao-lease";
/// How long a lease lives without renewal, unless `KAO_LEASE_SECONDS` says otherwise.
const LEASE_SECONDS: u64 = 60;

/// The retry policy of every store: up to 10 retries of a failed request, waits from 100 ms
/// doubling up to 15 s, all within 3 minutes (object_store retries 5xx, 429, 408, timeouts
/// and connections that failed before the request was sent; not 4xx).
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

/// The largest single put and the part size of multipart uploads: 8 MiB, or
/// `KAO_STORE_PART_BYTES` (for tests of the multipart path against a local server).
fn part_sizes() -> (u64, usize) {
    let bytes = std::env::var("KAO_STORE_PART_BYTES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|b| *b > 0)
        .unwrap_or(PART_BYTES);
    (bytes as u64, bytes)
}

/// The lease's time to live: `KAO_LEASE_SECONDS` (at least 2), else 60 s.
pub fn lease_ttl() -> Duration {
    let secs = std::env::var("KAO_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(LEASE_SECONDS)
        .max(2);
    Duration::from_secs(secs)
}

/// A run folder in object storage: the store, the prefix inside it, and a runtime for its
/// requests.
pub struct RunStore {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    url: String,
}

/// One line for a store error: the problem without response bodies or request details
/// (which carry no credentials, but XML over several lines).
pub fn describe(e: &object_store::Error) -> String {
    use object_store::Error as E;
    let short = match e {
        E::NotFound { .. } => "not found".to_string(),
        E::AlreadyExists { .. } => "already exists".to_string(),
        E::Precondition { .. } => "changed by another writer".to_string(),
        E::PermissionDenied { .. } => "permission denied".to_string(),
        E::Unauthenticated { .. } => "the credentials were refused".to_string(),
        E::NotImplemented { operation, .. } => format!("{operation} is not supported"),
        _ => String::new(),
    };
    let text = e.to_string();
    // S3 and Azure answer with <Code>…</Code><Message>…</Message>.
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    let status = text.find("status: ").map(|at| {
        text[at + 8..]
            .split([',', '\n'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    });
    let mut parts: Vec<String> = Vec::new();
    if !short.is_empty() {
        parts.push(short);
    }
    if let Some(s) = status {
        parts.push(s);
    }
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => parts.push(format!("{c}: {m}")),
        (Some(c), None) => parts.push(c),
        _ => {}
    }
    if parts.is_empty() {
        // No status: a transport or configuration error; its own text, on one line, with
        // any URL query cut.
        let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return one
            .split(' ')
            .map(|w| match w.find("://") {
                Some(_) => display_url(w),
                None => w.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    parts.join(", ")
}

/// The key of `rel` under `prefix`.
fn key_in(prefix: &Key, rel: &str) -> Result<Key, object_store::path::Error> {
    let full = if prefix.as_ref().is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    };
    Key::parse(full.trim_end_matches('/'))
}

impl RunStore {
    /// The store and prefix `url` names, configured from the environment. Makes no request.
    pub fn open(url: &str) -> Result<RunStore> {
        let shown = display_url(url).trim_end_matches('/').to_string();
        let parsed = url::Url::parse(url).map_err(|e| anyhow!("{shown}: not a URL ({e})"))?;
        let (scheme, path) = ObjectStoreScheme::parse(&parsed).map_err(|_| {
            anyhow!("{shown}: not a store kao writes to (s3://, gs://, az://, file://)")
        })?;
        let retry = retry_config();
        let fail = |e: object_store::Error| anyhow!("{shown}: {}", describe(&e));
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            ),
            ObjectStoreScheme::GoogleCloudStorage => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            ),
            ObjectStoreScheme::MicrosoftAzure => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(fail)?,
            ),
            ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
            _ => bail!("{shown}: not a store kao writes to (s3://, gs://, az://, file://)"),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kao-store")
            .enable_all()
            .build()
            .context("starting the object store's runtime")?;
        Ok(RunStore {
            rt,
            store,
            prefix: path,
            url: shown,
        })
    }

    /// The run's URL, as it may be shown.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `rel` (a `/`-separated path inside the run) as it may be shown.
    pub fn name(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    fn key(&self, rel: &str) -> Result<Key> {
        key_in(&self.prefix, rel)
            .map_err(|e| anyhow!("{}: not a usable object name ({e})", self.name(rel)))
    }

    /// `key` relative to the run's prefix.
    fn relative(&self, key: &Key) -> String {
        let key = key.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            key.to_string()
        } else {
            key.strip_prefix(prefix)
                .map(|k| k.trim_start_matches('/').to_string())
                .unwrap_or_else(|| key.to_string())
        }
    }

    fn fail(&self, what: &str, rel: &str, e: &object_store::Error) -> anyhow::Error {
        anyhow!("{}: cannot {what}: {}", self.name(rel), describe(e))
    }

    /// Checks that the run can be written (a probe object put and removed), so a store that
    /// refuses writes is one line before any work.
    pub fn check_writable(&self) -> Result<()> {
        let rel = format!(".kao-probe-{}", std::process::id());
        let key = self.key(&rel)?;
        self.rt.block_on(async {
            self.store
                .put(&key, PutPayload::from_static(b"kao"))
                .await
                .map_err(|e| anyhow!("{}: cannot write: {}", self.url, describe(&e)))?;
            self.store
                .delete(&key)
                .await
                .map_err(|e| anyhow!("{}: cannot delete: {}", self.url, describe(&e)))
        })
    }

    /// Whether object `rel` exists.
    pub fn exists(&self, rel: &str) -> Result<bool> {
        let key = self.key(rel)?;
        match self.rt.block_on(self.store.head(&key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail("read", rel, &e)),
        }
    }

    /// The objects under folder `rel` (every depth), relative to the run, with their last
    /// change (seconds since 1970).
    pub fn list(&self, rel: &str) -> Result<Vec<(String, i64)>> {
        let key = self.key(rel)?;
        let objects: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&key)).try_collect())
            .map_err(|e| self.fail("list", rel, &e))?;
        Ok(objects
            .into_iter()
            .map(|o| (self.relative(&o.location), o.last_modified.timestamp()))
            .collect())
    }

    /// Downloads objects `(rel, local file)` (several at once).
    pub fn download(&self, files: &[(String, std::path::PathBuf)]) -> Result<()> {
        self.rt.block_on(async {
            futures_util::stream::iter(files.iter().map(|(rel, to)| async move {
                let key = self.key(rel)?;
                let bytes = async { self.store.get(&key).await?.bytes().await }
                    .await
                    .map_err(|e| self.fail("read", rel, &e))?;
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("{}: cannot create", parent.display()))?;
                }
                std::fs::write(to, &bytes)
                    .with_context(|| format!("{}: cannot write", to.display()))?;
                Ok::<(), anyhow::Error>(())
            }))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
        })?;
        Ok(())
    }

    /// Uploads local files `(file, rel)` (several at once; each whole or not at all).
    pub fn upload(&self, files: &[(std::path::PathBuf, String)]) -> Result<()> {
        self.rt.block_on(async {
            futures_util::stream::iter(
                files
                    .iter()
                    .map(|(from, rel)| async move { self.upload_one(from, rel).await }),
            )
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
        })?;
        Ok(())
    }

    async fn upload_one(&self, from: &std::path::Path, rel: &str) -> Result<()> {
        let key = self.key(rel)?;
        let size = std::fs::metadata(from)
            .with_context(|| format!("{}: cannot read", from.display()))?
            .len();
        let (single, chunk) = part_sizes();
        if size <= single {
            let data =
                std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
            self.store
                .put(&key, PutPayload::from(data))
                .await
                .map_err(|e| self.fail("write", rel, &e))?;
            return Ok(());
        }
        self.put_multipart(&key, rel, from, chunk).await
    }

    /// A multipart upload of file `from` in parts of `chunk` bytes, aborted (its parts
    /// removed by the store) if any part or the completion fails.
    async fn put_multipart(
        &self,
        key: &Key,
        rel: &str,
        from: &std::path::Path,
        chunk: usize,
    ) -> Result<()> {
        use std::io::Read;
        let mut upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.fail("start an upload of", rel, &e))?;
        let mut file = std::fs::File::open(from)
            .with_context(|| format!("{}: cannot read", from.display()))?;
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut failed: Option<anyhow::Error> = None;
        loop {
            let mut buf = Vec::with_capacity(chunk);
            match (&mut file).take(chunk as u64).read_to_end(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    failed = Some(anyhow!("{}: cannot read: {e}", from.display()));
                    break;
                }
            }
            running.push(upload.put_part(PutPayload::from(buf)));
            if running.len() >= CONCURRENCY / 2
                && let Some(Err(e)) = running.next().await
            {
                failed = Some(self.fail("write", rel, &e));
                break;
            }
        }
        while failed.is_none() {
            match running.next().await {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => failed = Some(self.fail("write", rel, &e)),
            }
        }
        drop(running);
        let failed = match failed {
            None => match upload.complete().await {
                Ok(_) => return Ok(()),
                Err(e) => self.fail("write", rel, &e),
            },
            Some(e) => e,
        };
        if let Err(e) = upload.abort().await {
            return Err(failed.context(format!(
                "and its unfinished upload could not be aborted: {}",
                describe(&e)
            )));
        }
        Err(failed)
    }

    /// Moves object `from` to `to` (a copy, then the original removed).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (self.key(from)?, self.key(to)?);
        self.rt.block_on(async {
            self.store
                .copy(&a, &b)
                .await
                .map_err(|e| self.fail("copy", from, &e))?;
            self.store
                .delete(&a)
                .await
                .map_err(|e| self.fail("delete", from, &e))
        })
    }

    /// Removes object `rel` (nothing when it does not exist).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel)?;
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", rel, &e)),
        }
    }

    /// Takes the leases `rels` (one per video, [`LEASE_FILE`] in its partition) for this
    /// process, renewed every quarter of [`lease_ttl`] until released or dropped.
    ///
    /// A lease is created with a conditional put (create if absent). One that exists is
    /// watched for one time to live: renewed (its holder is alive) means the video is another
    /// task's, and this task is refused in one line; removed means it is tried again;
    /// unchanged means its holder died, and it is taken over by a conditional put on the
    /// version seen (so of two takers, one wins), with a warning.
    pub fn take_leases(
        self: &Arc<Self>,
        rels: &[String],
        warn: &mut dyn FnMut(&str),
    ) -> Result<Leases> {
        let me = format!(
            "PID {} on {}\n",
            std::process::id(),
            crate::align::lock::host_name()
        );
        let ttl = lease_ttl();
        let mut held: HashMap<String, UpdateVersion> = HashMap::new();
        let mut contested: Vec<String> = Vec::new();
        for rel in rels {
            match self.create(rel, &me)? {
                Some(v) => {
                    held.insert(rel.clone(), v);
                }
                None => contested.push(rel.clone()),
            }
        }
        // Watch the contested leases together for one time to live.
        let mut seen: HashMap<String, (Option<String>, String)> = HashMap::new();
        for rel in &contested {
            if let Some(found) = self.read_lease(rel)? {
                seen.insert(rel.clone(), found);
            }
        }
        let started = Instant::now();
        while !contested.is_empty() {
            let mut still = Vec::new();
            for rel in contested {
                let now = self.read_lease(&rel)?;
                match (now, seen.get(&rel)) {
                    (None, _) => match self.create(&rel, &me)? {
                        Some(v) => {
                            held.insert(rel, v);
                        }
                        None => {
                            seen.remove(&rel);
                            still.push(rel);
                        }
                    },
                    (Some((tag, holder)), Some((tag0, _))) if tag != *tag0 => {
                        bail!(
                            "{}: another task is doing this video ({}, renewing its lease); is the same shard running twice?",
                            self.name(&rel),
                            holder.trim()
                        );
                    }
                    (Some(found), None) => {
                        seen.insert(rel.clone(), found);
                        still.push(rel);
                    }
                    (Some(_), Some(_)) => still.push(rel),
                }
            }
            contested = still;
            if contested.is_empty() {
                break;
            }
            if started.elapsed() >= ttl {
                for rel in contested.drain(..) {
                    let (tag, holder) = seen.remove(&rel).unwrap_or_default();
                    let v = self.take_over(&rel, tag, &me)?;
                    warn(&format!(
                        "{}: taking over from a task that stopped renewing its lease ({}); its video is done again",
                        self.name(&rel),
                        holder.trim()
                    ));
                    held.insert(rel, v);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(500).min(ttl / 8));
        }
        Ok(Leases::start(self.clone(), held, me, ttl))
    }

    /// Creates lease `rel` if absent: its version, or `None` when it exists.
    fn create(&self, rel: &str, me: &str) -> Result<Option<UpdateVersion>> {
        let key = self.key(rel)?;
        let opts = PutOptions::from(PutMode::Create);
        match self.rt.block_on(self.store.put_opts(
            &key,
            PutPayload::from(me.as_bytes().to_vec()),
            opts,
        )) {
            Ok(r) => Ok(Some(r.into())),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(self.fail("write the lease", rel, &e)),
        }
    }

    /// The lease's version tag and holder, or `None` when there is none.
    fn read_lease(&self, rel: &str) -> Result<Option<(Option<String>, String)>> {
        let key = self.key(rel)?;
        let got = self.rt.block_on(async {
            let r = self.store.get(&key).await?;
            let tag = r.meta.e_tag.clone().or(r.meta.version.clone());
            let body = r.bytes().await?;
            Ok::<_, object_store::Error>((tag, String::from_utf8_lossy(&body).into_owned()))
        });
        match got {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("read the lease", rel, &e)),
        }
    }

    /// Replaces lease `rel` of version `tag`, which its holder stopped renewing.
    fn take_over(&self, rel: &str, tag: Option<String>, me: &str) -> Result<UpdateVersion> {
        let key = self.key(rel)?;
        let mode = PutMode::Update(UpdateVersion {
            e_tag: tag,
            version: None,
        });
        let put = self.rt.block_on(self.store.put_opts(
            &key,
            PutPayload::from(me.as_bytes().to_vec()),
            PutOptions::from(mode),
        ));
        match put {
            Ok(r) => Ok(r.into()),
            Err(object_store::Error::Precondition { .. }) => bail!(
                "{}: another task took this video's lease first; is the same shard running twice?",
                self.name(rel)
            ),
            // A store without conditional updates (a local folder): remove and create.
            Err(object_store::Error::NotImplemented { .. }) => {
                self.delete(rel)?;
                self.create(rel, me)?.with_context(|| {
                    format!(
                        "{}: another task took this video's lease first",
                        self.name(rel)
                    )
                })
            }
            Err(e) => Err(self.fail("take over the lease", rel, &e)),
        }
    }
}

/// The video leases a task holds, renewed in the background; each is released (its object
/// removed) by [`Leases::release`] or when dropped.
pub struct Leases {
    store: Arc<RunStore>,
    held: Arc<Mutex<HashMap<String, UpdateVersion>>>,
    lost: Arc<Mutex<HashSet<String>>>,
    stop: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Leases {
    fn start(
        store: Arc<RunStore>,
        held: HashMap<String, UpdateVersion>,
        me: String,
        ttl: Duration,
    ) -> Leases {
        let held = Arc::new(Mutex::new(held));
        let lost = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        // The task holds the store's client, not the RunStore: the runtime it runs on must
        // not be dropped from inside it.
        let (h, l, s) = (held.clone(), lost.clone(), stop.clone());
        let (client, prefix) = (store.store.clone(), store.prefix.clone());
        let renewer = store.rt.spawn(async move {
            loop {
                tokio::time::sleep(ttl / 4).await;
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let current: Vec<(String, UpdateVersion)> = h
                    .lock()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                for (rel, version) in current {
                    let Ok(key) = key_in(&prefix, &rel) else {
                        continue;
                    };
                    let put = client
                        .put_opts(
                            &key,
                            PutPayload::from(me.as_bytes().to_vec()),
                            PutOptions::from(PutMode::Update(version)),
                        )
                        .await;
                    match put {
                        Ok(r) => {
                            if let Ok(mut m) = h.lock()
                                && m.contains_key(&rel)
                            {
                                m.insert(rel, r.into());
                            }
                        }
                        // Another task took it over: this task must not finish the video.
                        Err(object_store::Error::Precondition { .. })
                        | Err(object_store::Error::NotFound { .. }) => {
                            if let Ok(mut m) = h.lock()
                                && m.remove(&rel).is_some()
                                && let Ok(mut l) = l.lock()
                            {
                                l.insert(rel);
                            }
                        }
                        // A store without conditional updates keeps its lease as created;
                        // other failures are retried at the next renewal.
                        Err(_) => {}
                    }
                }
            }
        });
        Leases {
            store,
            held,
            lost,
            stop,
            renewer: Some(renewer),
        }
    }

    /// Whether lease `rel` was taken over by another task (this one stopped renewing it for
    /// longer than its time to live).
    pub fn lost(&self, rel: &str) -> bool {
        self.lost.lock().map(|l| l.contains(rel)).unwrap_or(true)
    }

    /// Releases lease `rel`: no longer renewed, its object removed.
    pub fn release(&self, rel: &str) {
        let had = self
            .held
            .lock()
            .map(|mut m| m.remove(rel).is_some())
            .unwrap_or(false);
        if had {
            let _ = self.store.delete(rel);
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let rels: Vec<String> = self
            .held
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for rel in rels {
            self.release(&rel);
        }
    }
}
