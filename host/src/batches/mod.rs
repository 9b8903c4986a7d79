//! Batch jobs (`/v1/batches`): a JSONL file of requests run in the background, their
//! answers written to an output file (and the failures to an error file), as OpenAI's
//! Batch API does.
//!
//! One worker takes the open batches oldest first and runs up to `concurrency` lines of
//! one at a time, so they share the decoder's continuous batches. Lines run outside any
//! interactive request: an instance slot goes to a line only while no API request waits
//! for one (crate::runtime::admission), so a batch fills idle capacity and stays out of
//! interactive requests' way. Each line runs through an [`Executor`] (the API layer: the
//! endpoint's own checks and handler), as the key that created the batch.
//!
//! Durability: a line's result is stored as soon as it has run (store/batches.rs); the
//! batch's status is in the database. A restart resumes every open batch at the lines
//! without a result: none is lost, none is in the output twice. The output files are
//! written when the batch ends, their records inserted in the transaction that ends it
//! (an object written by a process that died before that is swept at start-up).

pub mod input;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::files::FileStorage;
use crate::store::{
    BatchEnd, BatchLineError, BatchRecord, BatchResult, BatchStatus, BatchTransition, FileRecord, MetadataStore, StoreError,
};

/// The completion windows accepted (OpenAI's one).
pub const COMPLETION_WINDOWS: &[(&str, i64)] = &[("24h", 24 * 3600)];

/// Purpose of the output and error files (OpenAI's).
pub const OUTPUT_PURPOSE: &str = "batch_output";

/// Runs one request line, as the key `key_id` of `tenant` sending `body` to `url` would
/// have: the answer's HTTP status and JSON body (an OpenAI error object for a failure).
/// The API layer implements it with the endpoints' own code.
pub trait Executor: Send + Sync {
    /// Runs the line to its answer.
    fn execute(&self, line: Line) -> BoxFuture<'static, (u16, Value)>;
}

/// A request line to run, and for whom.
#[derive(Debug, Clone)]
pub struct Line {
    /// The batch's tenant.
    pub tenant: String,
    /// The key that created the batch.
    pub key_id: String,
    /// The batch's endpoint.
    pub url: String,
    /// The request body.
    pub body: Value,
}

/// The batch worker.
#[derive(Clone)]
pub struct Batches {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    worker: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").field("concurrency", &self.inner.concurrency).finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn MetadataStore>,
    files: FileStorage,
    executor: Arc<dyn Executor>,
    /// Lines of one batch running at once.
    concurrency: usize,
    /// Told when a batch is created or cancelled.
    wake: Notify,
}

/// How a batch's run of lines ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    /// Every line has a result.
    All,
    /// Cancelled: no more lines were started.
    Cancelled,
    /// The completion window passed.
    Expired,
    /// The server is stopping: the batch resumes on the next start.
    Interrupted,
}

impl Batches {
    /// Starts the worker; open batches of an earlier run resume first.
    pub fn start(store: Arc<dyn MetadataStore>, files: FileStorage, executor: Arc<dyn Executor>, concurrency: usize) -> Self {
        let inner = Arc::new(Inner { store, files, executor, concurrency: concurrency.max(1), wake: Notify::new() });
        let (stop, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(work(inner.clone(), stop_rx));
        Self { inner, stop, worker: Arc::new(tokio::sync::Mutex::new(Some(worker))) }
    }

    /// Tells the worker a batch was created or cancelled.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops the worker; lines running are dropped and run again on the next start.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.worker.lock().await.take() {
            let _ = handle.await;
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("store task")?.map_err(|e| anyhow::anyhow!("batch store: {e}"))
}

async fn work(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let store = inner.store.clone();
        match blocking(move || store.next_open_batch()).await {
            Ok(Some(batch)) => {
                let id = batch.id.clone();
                match process(&inner, batch, &mut stop).await {
                    Ok(Ran::Interrupted) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(batch_id = %id, "batch failed: {e:#}");
                        let message = format!("The server could not run this batch: {e:#}");
                        let error = BatchLineError { code: "server_error".into(), message, param: None, line: None };
                        if let Err(e) = fail(&inner, &id, vec![error]).await {
                            tracing::error!(batch_id = %id, "marking the batch failed: {e:#}");
                        }
                    }
                }
            }
            Ok(None) => {
                tokio::select! {
                    () = inner.wake.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            Err(e) => {
                tracing::error!("reading batches: {e:#}");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Ends a batch as `failed` with `errors`.
async fn fail(inner: &Inner, id: &str, errors: Vec<BatchLineError>) -> anyhow::Result<()> {
    let (store, id) = (inner.store.clone(), id.to_owned());
    let open: Vec<BatchStatus> = BatchStatus::ALL.into_iter().filter(|s| s.is_open()).collect();
    blocking(move || {
        let t =
            BatchTransition { from: &open, to: BatchStatus::Failed, at: crate::unix_now(), total: None, errors: Some(&errors) };
        store.transition_batch(&id, &t)
    })
    .await
    .map(drop)
}

/// The request lines of a batch's input file, or why the batch fails.
async fn requests(inner: &Inner, b: &BatchRecord) -> anyhow::Result<Result<Vec<input::Request>, Vec<BatchLineError>>> {
    let missing = || {
        Ok(Err(vec![BatchLineError {
            code: "file_not_found".into(),
            message: format!("The input file {} was deleted before the batch ran.", b.input_file_id),
            param: Some("input_file_id".into()),
            line: None,
        }]))
    };
    let (store, tenant, file) = (inner.store.clone(), b.tenant.clone(), b.input_file_id.clone());
    if blocking(move || store.get_file(&tenant, &file)).await?.is_none() {
        return missing();
    }
    let bytes = match inner.files.read(&b.tenant, &b.input_file_id).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // Deleted between the record and the bytes.
            let (store, tenant, file) = (inner.store.clone(), b.tenant.clone(), b.input_file_id.clone());
            if blocking(move || store.get_file(&tenant, &file)).await?.is_none() {
                return missing();
            }
            return Err(e.context("reading the input file"));
        }
    };
    let endpoint = b.endpoint.clone();
    tokio::task::spawn_blocking(move || input::parse(&bytes, &endpoint)).await.context("parsing task")
}

async fn transition(
    inner: &Inner,
    id: &str,
    from: &'static [BatchStatus],
    to: BatchStatus,
    total: Option<u64>,
) -> anyhow::Result<bool> {
    let (store, id) = (inner.store.clone(), id.to_owned());
    blocking(move || store.transition_batch(&id, &BatchTransition { from, to, at: crate::unix_now(), total, errors: None })).await
}

async fn process(inner: &Arc<Inner>, b: BatchRecord, stop: &mut watch::Receiver<bool>) -> anyhow::Result<Ran> {
    // Cancelled before it started: nothing ran, nothing to write.
    if b.status == BatchStatus::Cancelling && b.in_progress_at.is_none() {
        end(inner, &b, Ran::Cancelled, &[]).await?;
        return Ok(Ran::Cancelled);
    }
    let requests = match requests(inner, &b).await? {
        Ok(r) => r,
        Err(errors) => {
            fail(inner, &b.id, errors).await?;
            tracing::info!(batch_id = %b.id, "batch input refused");
            return Ok(Ran::All);
        }
    };
    if b.status == BatchStatus::Validating {
        let total = requests.len() as u64;
        if !transition(inner, &b.id, &[BatchStatus::Validating], BatchStatus::InProgress, Some(total)).await? {
            return Ok(Ran::All); // cancelled meanwhile: the next round ends it
        }
        tracing::info!(batch_id = %b.id, requests = total, "batch started");
    }
    let ran = run_lines(inner, &b, &requests, stop).await?;
    if ran != Ran::Interrupted {
        end(inner, &b, ran, &requests).await?;
    }
    Ok(ran)
}

/// Runs every line without a result, `concurrency` at a time, until done, cancelled,
/// expired or stopped.
async fn run_lines(
    inner: &Arc<Inner>,
    b: &BatchRecord,
    requests: &[input::Request],
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<Ran> {
    let (store, id) = (inner.store.clone(), b.id.clone());
    let done: HashSet<u64> = blocking(move || store.batch_lines_done(&id)).await?.into_iter().collect();
    let mut todo = requests.iter().enumerate().map(|(i, r)| (i as u64, r)).filter(|(i, _)| !done.contains(i));
    let mut running = JoinSet::new();
    let mut ran = Ran::All;
    loop {
        while ran == Ran::All && running.len() < inner.concurrency {
            let (store, id) = (inner.store.clone(), b.id.clone());
            let status = blocking(move || store.batch_status(&id)).await?;
            if status == Some(BatchStatus::Cancelling) {
                ran = Ran::Cancelled;
            } else if crate::unix_now() >= b.expires_at {
                ran = Ran::Expired;
            } else if let Some((line, request)) = todo.next() {
                let run = Line {
                    tenant: b.tenant.clone(),
                    key_id: b.key_id.clone(),
                    url: b.endpoint.clone(),
                    body: request.body.clone(),
                };
                running.spawn(run_line(inner.clone(), b.id.clone(), run, line, request.custom_id.clone()));
                continue;
            }
            break;
        }
        if running.is_empty() {
            return Ok(ran);
        }
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(anyhow::anyhow!("batch line task: {e}")),
            },
            _ = stop.changed() => {
                running.abort_all();
                return Ok(Ran::Interrupted);
            }
        }
    }
}

/// Runs one line and stores its result.
async fn run_line(inner: Arc<Inner>, batch_id: String, run: Line, line: u64, custom_id: String) -> anyhow::Result<()> {
    let (status, body) = inner.executor.execute(run).await;
    let ok = (200..300).contains(&status);
    let out = json!({
        "id": crate::ids::random_id::<12>("batch_req_")?,
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": crate::ids::random_id::<12>("req_")?, "body": body},
        "error": null,
    });
    let result = BatchResult { line, ok, body: out.to_string() };
    let store = inner.store.clone();
    blocking(move || store.put_batch_result(&batch_id, &result)).await
}

/// Writes the output and error files and ends the batch.
async fn end(inner: &Inner, b: &BatchRecord, ran: Ran, requests: &[input::Request]) -> anyhow::Result<()> {
    let status = match ran {
        Ran::All => BatchStatus::Completed,
        Ran::Cancelled => BatchStatus::Cancelled,
        Ran::Expired => BatchStatus::Expired,
        Ran::Interrupted => return Ok(()),
    };
    if ran == Ran::All {
        // Only a batch in progress finalizes; one already finalizing (a restart) goes on.
        transition(inner, &b.id, &[BatchStatus::InProgress], BatchStatus::Finalizing, None).await?;
    }
    let (store, id) = (inner.store.clone(), b.id.clone());
    let results = blocking(move || store.batch_results(&id)).await?;
    let (mut output, mut errors) = (Vec::new(), Vec::new());
    let mut done = HashSet::new();
    for r in &results {
        done.insert(r.line);
        let file = if r.ok { &mut output } else { &mut errors };
        file.extend_from_slice(r.body.as_bytes());
        file.push(b'\n');
    }
    if ran == Ran::Expired {
        for (i, r) in requests.iter().enumerate().filter(|(i, _)| !done.contains(&(*i as u64))) {
            let line = json!({
                "id": crate::ids::random_id::<12>("batch_req_")?,
                "custom_id": r.custom_id,
                "response": null,
                "error": {"code": "batch_expired", "message": format!(
                    "This request could not be executed before the completion window expired (line {}).", i + 1)},
            });
            errors.extend_from_slice(line.to_string().as_bytes());
            errors.push(b'\n');
        }
    }
    let output = write_file(inner, b, "output", output).await?;
    let error = write_file(inner, b, "error", errors).await?;
    let written: Vec<String> = [&output, &error].into_iter().flatten().map(|f| f.id.clone()).collect();
    let (store, id) = (inner.store.clone(), b.id.clone());
    let end = BatchEnd { status, at: crate::unix_now(), output, error };
    if blocking(move || store.end_batch(&id, &end)).await? {
        tracing::info!(batch_id = %b.id, status = status.as_str(), lines = results.len(), "batch ended");
    } else {
        // Ended elsewhere meanwhile (it cannot be, with one worker): keep no stray objects.
        for id in written {
            let _ = inner.files.delete(&b.tenant, &id).await;
        }
    }
    Ok(())
}

/// Stores `bytes` as a new `batch_output` file of the batch's tenant (its record is
/// inserted when the batch ends); `None` for no lines.
async fn write_file(inner: &Inner, b: &BatchRecord, kind: &str, bytes: Vec<u8>) -> anyhow::Result<Option<FileRecord>> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let filename = format!("{}_{kind}.jsonl", b.id);
    let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(bytes))]);
    let stored = inner.files.store_stream(&b.tenant, body, u64::MAX).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(FileRecord {
        content_type: crate::files::sniff::content_type(&stored.head, &filename).to_owned(),
        id: stored.id,
        tenant: b.tenant.clone(),
        filename,
        purpose: OUTPUT_PURPOSE.into(),
        bytes: stored.bytes,
        created_at: crate::unix_now(),
    }))
}
