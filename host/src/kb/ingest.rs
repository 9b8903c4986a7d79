//! The ingestion worker. One worker (embedding is CPU-bound and the model runtime already
//! uses every core) serves the tenants in turns: each tenant with work has a queue of its
//! sources, first come first served, and the tenants take turns round-robin. A turn is one
//! step of the source at the front of a tenant's queue:
//!
//! 1. read, parse and cut the document (on the blocking pool);
//! 2. for `semantic`, embed one batch of its sentences (repeated until all are embedded;
//!    breakpoints are decided a window of sentences at a time, see [`chunk::Semantic`]);
//! 3. embed, store and flush one batch of chunks, then record `chunks_done` (repeated
//!    until every chunk is stored).
//!
//! So another tenant's source waits for at most one step of each other busy tenant,
//! however large their uploads are. A source's state between its turns lives here, in
//! memory; what is durable is the same as when sources ran whole: `chunks_total` and
//! `chunks_done` after each batch, so a restart resumes from the last recorded batch.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::{ChunkingKind, Inner, Job, blocking, chunk, chunk_payload, embed};
use crate::store::{DataSourceRecord, FileRecord, KnowledgeBaseRecord, SourceProgress, SourceStatus};
use crate::vector::{ChunkPoint, point_id};

/// How a job ended, when it did not complete.
#[derive(Debug)]
enum Stop {
    /// Record this failure on the source.
    Failed(String),
    /// The source or its knowledge base is gone, or the server is stopping: leave it.
    Abandoned,
}

/// Work queued per tenant, served round-robin: the tenant at the front has the turn.
#[derive(Debug)]
struct Fair<T> {
    tenants: VecDeque<(String, VecDeque<T>)>,
}

impl<T> Default for Fair<T> {
    fn default() -> Self {
        Self { tenants: VecDeque::new() }
    }
}

impl<T> Fair<T> {
    /// Queues `item` behind the tenant's earlier work; a tenant new to the line joins it
    /// at the back.
    fn push(&mut self, tenant: &str, item: T) {
        match self.tenants.iter_mut().find(|(t, _)| t == tenant) {
            Some((_, queue)) => queue.push_back(item),
            None => self.tenants.push_back((tenant.to_owned(), VecDeque::from([item]))),
        }
    }

    fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The item whose tenant has the turn.
    fn current(&mut self) -> Option<&mut T> {
        self.tenants.front_mut().and_then(|(_, queue)| queue.front_mut())
    }

    /// The tenant with the turn had it: it goes to the back of the line.
    fn next_turn(&mut self) {
        if let Some(tenant) = self.tenants.pop_front() {
            self.tenants.push_back(tenant);
        }
    }

    /// The current item is finished: it leaves its queue, and its tenant goes to the
    /// back of the line (or leaves it, with nothing more queued).
    fn finish_current(&mut self) -> Option<T> {
        let (tenant, mut queue) = self.tenants.pop_front()?;
        let item = queue.pop_front();
        if !queue.is_empty() {
            self.tenants.push_back((tenant, queue));
        }
        item
    }
}

/// A queued source and how far it got.
struct Active {
    job: Job,
    /// When its first turn began.
    started: Option<Instant>,
    stage: Stage,
}

enum Stage {
    /// Not read yet.
    New,
    /// `semantic`: sentences being embedded.
    Sentences(Box<Sentences>),
    /// Chunks being embedded and stored.
    Chunks(Box<Chunks>),
}

/// The records a source's turns work with.
struct Ctx {
    source: DataSourceRecord,
    file: FileRecord,
    kb: KnowledgeBaseRecord,
}

struct Sentences {
    ctx: Ctx,
    /// Sentences not embedded yet.
    rest: std::vec::IntoIter<String>,
    grouper: chunk::Semantic,
    /// The length of the text, which bounds the chunks as for any cut.
    text_bytes: usize,
}

struct Chunks {
    ctx: Ctx,
    chunks: Vec<String>,
    done: u64,
}

/// What the first step found.
enum Cut {
    Sentences(Vec<String>),
    Chunks(Vec<String>),
}

pub(super) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>, mut stop: watch::Receiver<bool>) {
    let mut queue: Fair<Active> = Fair::default();
    let add = |queue: &mut Fair<Active>, job: Job| {
        let tenant = job.tenant.clone();
        queue.push(&tenant, Active { job, started: None, stage: Stage::New });
    };
    // Knowledge bases written since the queue was last empty. They are indexed when it
    // empties, not after every source: indexing competes with embedding for the cores, and
    // a build per source would rebuild the same graph over and over during a bulk load.
    let mut written: HashSet<String> = HashSet::new();
    loop {
        while let Ok(job) = rx.try_recv() {
            add(&mut queue, job);
        }
        if queue.is_empty() {
            for kb_id in written.drain() {
                let vectors = inner.vectors.clone();
                if let Err(e) = blocking(move || vectors.index(&kb_id)).await {
                    tracing::warn!("starting to index vectors: {e}");
                }
            }
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => add(&mut queue, job),
                    None => return,
                },
                _ = stop.changed() => return,
            }
            continue;
        }
        if *stop.borrow() {
            return;
        }
        let Some(active) = queue.current() else { continue };
        written.insert(active.job.kb_id.clone());
        let started = *active.started.get_or_insert_with(Instant::now);
        match turn(&inner, active, &stop).await {
            Ok(None) => queue.next_turn(),
            Ok(Some(chunks)) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(source_id = %active.job.source_id, chunks, secs, chunks_per_s = chunks as f64 / secs.max(1e-9), "ingested");
                queue.finish_current();
            }
            Err(why) => {
                record_stop(&inner, &active.job, why);
                queue.finish_current();
            }
        }
    }
}

fn record_stop(inner: &Inner, job: &Job, stop: Stop) {
    match stop {
        Stop::Abandoned => tracing::info!(source_id = %job.source_id, "ingestion stopped"),
        Stop::Failed(why) => {
            tracing::warn!(source_id = %job.source_id, "ingestion failed: {why}");
            let current = inner.store.get_source(&job.tenant, &job.kb_id, &job.source_id).ok().flatten();
            let failed = SourceProgress {
                status: SourceStatus::Failed,
                error: Some(why),
                chunks_total: current.as_ref().and_then(|s| s.chunks_total),
                chunks_done: current.map_or(0, |s| s.chunks_done),
            };
            let mut recorded = inner.store.update_source(&job.source_id, &failed);
            // A full disk must not leave the source `processing` for ever: the reserve
            // makes room for this one record (the operator frees space after).
            if recorded.as_ref().is_err_and(|e| crate::full_disk::is_full(&format!("{e:#}"))) && inner.reserve.release() {
                recorded = inner.store.update_source(&job.source_id, &failed);
            }
            if let Err(e) = recorded {
                tracing::error!(source_id = %job.source_id, "recording an ingestion failure: {e}");
            }
        }
    }
}

fn store_err(e: crate::store::StoreError) -> Stop {
    tracing::error!("metadata store: {e:#}");
    full_or(&e, "internal error while recording progress")
}

/// The failure to record for a storage error: the full-disk message when the disk or
/// quota is full (crate::full_disk), `otherwise` else.
fn full_or(e: &dyn std::fmt::Display, otherwise: &str) -> Stop {
    let full = crate::full_disk::is_full(&format!("{e:#}"));
    Stop::Failed(if full { crate::full_disk::MESSAGE.to_owned() } else { otherwise.to_owned() })
}

fn processing(total: Option<u64>, done: u64) -> SourceProgress {
    SourceProgress { status: SourceStatus::Processing, error: None, chunks_total: total, chunks_done: done }
}

/// One step of a source: `Ok(None)` when there is more to do, `Ok(Some(chunks))` once it
/// is complete.
async fn turn(inner: &Inner, active: &mut Active, stop: &watch::Receiver<bool>) -> Result<Option<usize>, Stop> {
    if *stop.borrow() {
        return Err(Stop::Abandoned);
    }
    let next = match std::mem::replace(&mut active.stage, Stage::New) {
        Stage::New => match start(inner, &active.job).await? {
            Started::Done(total) => return Ok(Some(total)),
            Started::Cut(ctx, Cut::Chunks(chunks)) => enter_chunks(inner, *ctx, chunks).await?,
            Started::Cut(ctx, Cut::Sentences(sentences)) => {
                let text_bytes = sentences.iter().map(String::len).sum();
                let grouper = chunk::Semantic::new(ctx.kb.chunking.chunk_size, chunk::SEMANTIC_WINDOW);
                Stage::Sentences(Box::new(Sentences { ctx: *ctx, rest: sentences.into_iter(), grouper, text_bytes }))
            }
        },
        Stage::Sentences(mut s) => {
            embed_sentences(inner, &mut s).await?;
            if !s.rest.as_slice().is_empty() {
                Stage::Sentences(s)
            } else {
                let Sentences { ctx, grouper, text_bytes, .. } = *s;
                let chunks = grouper.finish();
                let limit = super::chunk_limit(text_bytes);
                if chunks.len() > limit {
                    return Err(too_many_chunks(limit, text_bytes));
                }
                enter_chunks(inner, ctx, chunks).await?
            }
        }
        Stage::Chunks(mut c) => {
            store_batch(inner, &active.job, &mut c).await?;
            Stage::Chunks(c)
        }
    };
    // A source whose every chunk is stored completes in the turn that stored the last.
    if let Stage::Chunks(c) = &next {
        let total = c.chunks.len() as u64;
        if c.done >= total {
            let completed =
                SourceProgress { status: SourceStatus::Completed, error: None, chunks_total: Some(total), chunks_done: total };
            inner.store.update_source(&c.ctx.source.id, &completed).map_err(store_err)?;
            return Ok(Some(total as usize));
        }
    }
    active.stage = next;
    Ok(None)
}

enum Started {
    /// Nothing to do: the source is already completed or failed.
    Done(usize),
    Cut(Box<Ctx>, Cut),
}

/// The first step: the records, the bytes, the text and its cut.
async fn start(inner: &Inner, job: &Job) -> Result<Started, Stop> {
    let store = &inner.store;
    let Some(source) = store.get_source(&job.tenant, &job.kb_id, &job.source_id).map_err(store_err)? else {
        return Err(Stop::Abandoned);
    };
    if matches!(source.status, SourceStatus::Completed | SourceStatus::Failed) {
        return Ok(Started::Done(source.chunks_total.unwrap_or(0) as usize));
    }
    let Some(kb) = store.get_kb(&job.tenant, &job.kb_id).map_err(store_err)? else {
        return Err(Stop::Abandoned);
    };
    if !store.update_source(&source.id, &processing(source.chunks_total, source.chunks_done)).map_err(store_err)? {
        return Err(Stop::Abandoned);
    }
    // The API bounds metadata; a source recorded before it did is refused here rather
    // than copied onto every chunk.
    let metadata_bytes = super::metadata_bytes(&source.metadata);
    if metadata_bytes > super::MAX_METADATA_BYTES {
        return Err(Stop::Failed(format!(
            "the data source's metadata is {metadata_bytes} bytes as JSON, more than the {} copied onto each chunk; \
             add the file again with smaller metadata",
            super::MAX_METADATA_BYTES
        )));
    }
    let file = store
        .get_file(&job.tenant, &source.file_id)
        .map_err(store_err)?
        .ok_or_else(|| Stop::Failed(format!("file {} was deleted before it was ingested", source.file_id)))?;
    let bytes = inner.files.read(&job.tenant, &file.id).await.map_err(|e| {
        tracing::error!(file_id = %file.id, "reading file: {e:#}");
        Stop::Failed(format!("could not read file {}", file.id))
    })?;
    let content_type = file.content_type.clone();
    let strategy = kb.chunking;
    let pieces = tokio::task::spawn_blocking(move || cut(&content_type, &bytes, strategy))
        .await
        .map_err(|e| Stop::Failed(format!("parsing stopped: {e}")))??;
    let empty = match &pieces {
        Cut::Sentences(s) => s.is_empty(),
        Cut::Chunks(c) => c.is_empty(),
    };
    if empty {
        return Err(Stop::Failed(format!("no text found in {}", file.filename)));
    }
    Ok(Started::Cut(Box::new(Ctx { source, file, kb }), pieces))
}

/// Text and cut of a document, within the bounds of one source.
fn cut(content_type: &str, bytes: &[u8], strategy: chunk::ChunkingStrategy) -> Result<Cut, Stop> {
    let text = super::parse::extract(content_type, bytes).map_err(|e| Stop::Failed(e.to_string()))?;
    match strategy.kind {
        ChunkingKind::Semantic => {
            strategy.sentences_at_most(&text, super::MAX_SENTENCES_PER_SOURCE).map(Cut::Sentences).ok_or_else(|| {
                Stop::Failed(format!(
                    "the document has more than {} sentences, the most a semantic cut embeds for one source; \
                 use the recursive strategy or split the document",
                    super::MAX_SENTENCES_PER_SOURCE
                ))
            })
        }
        ChunkingKind::Recursive | ChunkingKind::FixedSize => {
            let limit = super::chunk_limit(text.len());
            strategy.split_at_most(&text, limit).map(Cut::Chunks).ok_or_else(|| too_many_chunks(limit, text.len()))
        }
    }
}

fn too_many_chunks(limit: usize, text_bytes: usize) -> Stop {
    Stop::Failed(format!(
        "the document would be cut into more than {limit} chunks, the most allowed for its {text_bytes} bytes of text \
         (one per {} bytes, at most {} per source); use a larger chunk_size or split the document",
        super::TEXT_BYTES_PER_CHUNK,
        super::MAX_CHUNKS_PER_SOURCE
    ))
}

/// Records the chunk count and where storing them starts (after the chunks a previous
/// run recorded).
async fn enter_chunks(inner: &Inner, ctx: Ctx, chunks: Vec<String>) -> Result<Stage, Stop> {
    if chunks.is_empty() {
        return Err(Stop::Failed(format!("no text found in {}", ctx.file.filename)));
    }
    let total = chunks.len() as u64;
    let done = ctx.source.chunks_done.min(total);
    if !inner.store.update_source(&ctx.source.id, &processing(Some(total), done)).map_err(store_err)? {
        return Err(Stop::Abandoned);
    }
    Ok(Stage::Chunks(Box::new(Chunks { ctx, chunks, done })))
}

/// Embeds the next batch of a semantic source's sentences into its cut. A resumed
/// source embeds them again and gets the same chunks, since the vectors are the same.
async fn embed_sentences(inner: &Inner, s: &mut Sentences) -> Result<(), Stop> {
    let batch: Vec<String> = s.rest.by_ref().take(embed::BATCH).collect();
    let trimmed: Vec<String> = batch.iter().map(|s| s.trim().to_owned()).collect();
    let vectors = inner.embedder.embed(&s.ctx.kb.embedding_model, &trimmed).await.map_err(|e| Stop::Failed(e.to_string()))?;
    for (sentence, vector) in batch.into_iter().zip(vectors) {
        s.grouper.push(sentence, vector);
    }
    let limit = super::chunk_limit(s.text_bytes);
    if s.grouper.chunks() > limit {
        return Err(too_many_chunks(limit, s.text_bytes));
    }
    Ok(())
}

/// Embeds, stores and records the next batch of chunks.
async fn store_batch(inner: &Inner, job: &Job, c: &mut Chunks) -> Result<(), Stop> {
    let store = &inner.store;
    let Ctx { source, file, kb } = &c.ctx;
    let total = c.chunks.len() as u64;
    let from = c.done as usize;
    let batch = &c.chunks[from..(from + embed::BATCH).min(c.chunks.len())];
    let vectors = inner.embedder.embed(&kb.embedding_model, batch).await.map_err(|e| Stop::Failed(e.to_string()))?;
    let points: Vec<ChunkPoint> = batch
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (text, dense))| {
            let index = from + i;
            ChunkPoint {
                id: point_id(&source.id, index as u64),
                dense,
                text: text.clone(),
                payload: chunk_payload(source, file, index, text),
            }
        })
        .collect();
    let vstore = inner.vectors.clone();
    let kb_id = kb.id.clone();
    blocking(move || {
        vstore.upsert(&kb_id, points)?;
        vstore.flush(&kb_id)
    })
    .await
    .map_err(|e| {
        tracing::error!(source_id = %source.id, "vector store: {e:#}");
        full_or(&e, "could not store the chunks' vectors")
    })?;
    c.done += batch.len() as u64;
    if !store.update_source(&source.id, &processing(Some(total), c.done)).map_err(store_err)? {
        // Deleted meanwhile: take back what this batch wrote (the whole collection if
        // the knowledge base itself is gone, since the upsert may have recreated it).
        let kb_gone = store.get_kb(&job.tenant, &kb.id).map_err(store_err)?.is_none();
        let vstore = inner.vectors.clone();
        let (kb_id, source_id) = (kb.id.clone(), source.id.clone());
        let _ =
            blocking(
                move || {
                    if kb_gone { vstore.drop_collection(&kb_id) } else { vstore.delete_where(&kb_id, "source_id", &source_id) }
                },
            )
            .await;
        return Err(Stop::Abandoned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Cut, Fair, Stop, cut};
    use crate::kb::{ChunkingKind, ChunkingStrategy, chunk_limit, parse};

    /// The chunks of a document through parse and cut, as the worker makes them.
    fn chunks(content_type: &str, bytes: &[u8], strategy: ChunkingStrategy) -> Result<Vec<String>, String> {
        match cut(content_type, bytes, strategy) {
            Ok(Cut::Chunks(c)) => Ok(c),
            Ok(Cut::Sentences(_)) => Err("sentences".into()),
            Err(Stop::Failed(why)) => Err(why),
            Err(Stop::Abandoned) => Err("abandoned".into()),
        }
    }

    const SMALLEST: ChunkingStrategy = ChunkingStrategy { kind: ChunkingKind::Recursive, chunk_size: 50, chunk_overlap: 25 };

    /// Checks a cut stays within its bounds: text at most `expansion` times the file,
    /// chunks within the per-source limit.
    fn assert_bounded(content_type: &str, bytes: &[u8], expansion: usize) -> Vec<String> {
        let text = parse::extract(content_type, bytes).unwrap();
        assert!(text.len() <= expansion * bytes.len(), "{} bytes of text from {} bytes", text.len(), bytes.len());
        for strategy in [ChunkingStrategy::default(), SMALLEST] {
            let chunks = chunks(content_type, bytes, strategy).unwrap();
            assert!(chunks.len() <= chunk_limit(text.len()), "{} chunks", chunks.len());
        }
        chunks(content_type, bytes, ChunkingStrategy::default()).unwrap()
    }

    /// A 60 KB JSON whose records sit under long keys: every value's line used to carry
    /// the whole path (8 keys of 400 characters, 3.2 KB), so its ~7,000 small values
    /// became 22 MB of text and, cut at 50 characters, over 900,000 chunks.
    #[test]
    fn a_json_of_small_records_under_long_keys_stays_small() {
        let key = |i: usize| format!("{i}{}", "k".repeat(399));
        let rows: Vec<String> = (0..7_000).map(|i| format!(r#"{{"v":{}}}"#, i % 10)).collect();
        let mut doc = format!(r#"{{"rows":[{}]}}"#, rows.join(","));
        for i in 0..8 {
            doc = format!(r#"{{"{}":{doc}}}"#, key(i));
        }
        assert!((55_000..70_000).contains(&doc.len()), "{}", doc.len());
        let chunks = assert_bounded("application/json", doc.as_bytes(), 16);
        // Lines keep the end of the path, where the record is named.
        assert!(chunks[0].contains("…rows[0].v: 0\n…rows[1].v: 1"), "{}", chunks[0]);
        assert!(chunks.len() < 1_000, "{}", chunks.len());
    }

    /// A 102 KB CSV whose header names a 50 KB column over 25,000 short rows: the header
    /// was repeated on every row, 1.3 GB of text.
    #[test]
    fn a_csv_of_short_rows_under_a_long_header_stays_small() {
        let mut doc = format!("{},b\n", "h".repeat(52_000));
        for i in 0..25_000 {
            doc.push_str(&format!("{}\n", i % 10));
        }
        assert!((100_000..105_000).contains(&doc.len()), "{}", doc.len());
        let chunks = assert_bounded("text/csv", doc.as_bytes(), 32);
        assert!(chunks[0].starts_with(&format!("{}…: 0\n{}…: 1", "h".repeat(63), "h".repeat(63))), "{}", chunks[0]);
        // Ordinary headers are written as they are.
        assert_eq!(parse::extract("text/csv", b"name,age\nAda,36\n").unwrap(), "name: Ada; age: 36\n");
    }

    #[test]
    fn past_the_bounds_a_source_fails_with_the_reason() {
        // 5 MB of words cut into 50-character chunks: 200,000 chunks, past the cap.
        let words: String = (0..500_000).map(|i| format!("w{:07} ", i)).collect();
        let why = chunks("text/plain", words.as_bytes(), SMALLEST).unwrap_err();
        assert!(why.contains("more than 100000 chunks") && why.contains("larger chunk_size"), "{why}");
        // The same text in 800-character chunks is fine.
        assert!(chunks("text/plain", words.as_bytes(), ChunkingStrategy::default()).unwrap().len() < 10_000);
        // Text past the limit for the file's size.
        let why = parse::extract_at_most("application/json", br#"{"a": [1, 2, 3, 4, 5]}"#, 20).unwrap_err().to_string();
        assert!(why.contains("more than 20 bytes of text") && why.contains("split it"), "{why}");
        assert_eq!(parse::text_limit(10), 64 << 10);
        assert_eq!(parse::text_limit(1 << 20), 64 << 20);
        assert_eq!(parse::text_limit(1 << 30), parse::MAX_TEXT_BYTES);
    }

    #[test]
    fn chunk_limit_is_per_byte_of_text_and_capped() {
        assert_eq!(chunk_limit(0), 64);
        assert_eq!(chunk_limit(8_000), 1_000);
        assert_eq!(chunk_limit(usize::MAX), crate::kb::MAX_CHUNKS_PER_SOURCE);
        // Even the smallest chunks of ordinary text stay well inside the limit.
        let text: String = (0..20_000).map(|i| format!("w{i} ")).collect();
        let n = SMALLEST.split(&text).len();
        assert!(n * crate::kb::TEXT_BYTES_PER_CHUNK * 2 < text.len(), "{n} chunks of {} bytes", text.len());
    }

    /// Runs `turns` turns where each item needs `steps` turns; returns the order of the
    /// turns (tenant, item) and of the completions.
    fn simulate(jobs: &[(&str, &str, usize)]) -> (Vec<String>, Vec<String>) {
        let mut fair: Fair<(String, usize)> = Fair::default();
        for (tenant, name, steps) in jobs {
            fair.push(tenant, ((*name).to_owned(), *steps));
        }
        let (mut turns, mut done) = (Vec::new(), Vec::new());
        while let Some((name, left)) = fair.current() {
            turns.push(name.clone());
            *left -= 1;
            if *left == 0 {
                done.push(fair.finish_current().unwrap().0);
            } else {
                fair.next_turn();
            }
        }
        (turns, done)
    }

    #[test]
    fn tenants_take_turns_and_a_small_source_overtakes_a_large_one() {
        // Tenant a queues a source of 100 steps, then b one of 2: b is done after its
        // second turn, while a has had two.
        let (turns, done) = simulate(&[("a", "big", 100), ("b", "small", 2)]);
        assert_eq!(turns[..4], ["big", "small", "big", "small"]);
        assert_eq!(done, ["small", "big"]);
        assert_eq!(turns.len(), 102);
    }

    #[test]
    fn one_tenants_sources_run_in_order_and_share_its_turns() {
        let (turns, done) = simulate(&[("a", "a1", 3), ("a", "a2", 1), ("b", "b1", 3), ("c", "c1", 1)]);
        assert_eq!(turns, ["a1", "b1", "c1", "a1", "b1", "a1", "b1", "a2"]);
        assert_eq!(done, ["c1", "a1", "b1", "a2"]);
    }

    #[test]
    fn a_tenant_joining_late_waits_one_round_at_most() {
        let mut fair: Fair<&str> = Fair::default();
        fair.push("a", "a1");
        fair.push("b", "b1");
        fair.next_turn(); // a had its turn
        fair.push("c", "c1");
        assert_eq!(fair.current(), Some(&mut "b1"));
        fair.next_turn();
        assert_eq!(fair.current(), Some(&mut "a1"));
        fair.next_turn();
        assert_eq!(fair.current(), Some(&mut "c1"));
        assert_eq!(fair.finish_current(), Some("c1"));
        assert_eq!(fair.finish_current(), Some("b1"));
        assert_eq!(fair.finish_current(), Some("a1"));
        assert!(fair.is_empty() && fair.current().is_none());
    }
}
