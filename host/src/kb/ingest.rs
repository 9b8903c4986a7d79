//! The ingestion worker: one data source at a time (embedding is CPU-bound and the
//! model runtime already uses every core), batch by batch, progress recorded after each
//! batch is durable.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::{ChunkingKind, Inner, Job, blocking, chunk, chunk_payload, embed};
use crate::store::{SourceProgress, SourceStatus};
use crate::vector::{ChunkPoint, point_id};

/// How a job ended, when it did not complete.
enum Stop {
    /// Record this failure on the source.
    Failed(String),
    /// The source or its knowledge base is gone, or the server is stopping: leave it.
    Abandoned,
}

pub(super) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Job>, mut stop: watch::Receiver<bool>) {
    // Knowledge bases written since the queue was last empty. They are indexed when it
    // empties, not after every source: indexing competes with embedding for the cores, and
    // a build per source would rebuild the same graph over and over during a bulk load.
    let mut written: HashSet<String> = HashSet::new();
    loop {
        if rx.is_empty() {
            for kb_id in written.drain() {
                let vectors = inner.vectors.clone();
                if let Err(e) = blocking(move || vectors.index(&kb_id)).await {
                    tracing::warn!("starting to index vectors: {e}");
                }
            }
        }
        let job = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = stop.changed() => return,
        };
        let started = Instant::now();
        written.insert(job.kb_id.clone());
        match ingest(&inner, &job, &stop).await {
            Ok(chunks) => {
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(source_id = %job.source_id, chunks, secs, chunks_per_s = chunks as f64 / secs.max(1e-9), "ingested");
            }
            Err(Stop::Abandoned) => tracing::info!(source_id = %job.source_id, "ingestion stopped"),
            Err(Stop::Failed(why)) => {
                tracing::warn!(source_id = %job.source_id, "ingestion failed: {why}");
                let failed = SourceProgress { status: SourceStatus::Failed, error: Some(why), chunks_total: None, chunks_done: 0 };
                let current = inner.store.get_source(&job.tenant, &job.kb_id, &job.source_id).ok().flatten();
                let failed = SourceProgress {
                    chunks_total: current.as_ref().and_then(|s| s.chunks_total),
                    chunks_done: current.map_or(0, |s| s.chunks_done),
                    ..failed
                };
                if let Err(e) = inner.store.update_source(&job.source_id, &failed) {
                    tracing::error!(source_id = %job.source_id, "recording an ingestion failure: {e}");
                }
            }
        }
    }
}

fn store_err(e: crate::store::StoreError) -> Stop {
    tracing::error!("metadata store: {e}");
    Stop::Failed("internal error while recording progress".into())
}

/// Ingests one source; returns the number of chunks it has.
async fn ingest(inner: &Inner, job: &Job, stop: &watch::Receiver<bool>) -> Result<usize, Stop> {
    let store = &inner.store;
    let Some(source) = store.get_source(&job.tenant, &job.kb_id, &job.source_id).map_err(store_err)? else {
        return Err(Stop::Abandoned);
    };
    if matches!(source.status, SourceStatus::Completed | SourceStatus::Failed) {
        return Ok(source.chunks_total.unwrap_or(0) as usize);
    }
    let Some(kb) = store.get_kb(&job.tenant, &job.kb_id).map_err(store_err)? else {
        return Err(Stop::Abandoned);
    };
    let progress = |total: Option<u64>, done: u64| SourceProgress {
        status: SourceStatus::Processing,
        error: None,
        chunks_total: total,
        chunks_done: done,
    };
    if !store.update_source(&source.id, &progress(source.chunks_total, source.chunks_done)).map_err(store_err)? {
        return Err(Stop::Abandoned);
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
    let pieces = tokio::task::spawn_blocking(move || {
        super::parse::extract(&content_type, &bytes).map(|text| match strategy.kind {
            ChunkingKind::Semantic => strategy.sentences(&text),
            ChunkingKind::Recursive | ChunkingKind::FixedSize => strategy.split(&text),
        })
    })
    .await
    .map_err(|e| Stop::Failed(format!("parsing stopped: {e}")))?
    .map_err(|e| Stop::Failed(e.to_string()))?;
    let chunks = match strategy.kind {
        ChunkingKind::Semantic => semantic_chunks(inner, job, &kb.embedding_model, &pieces, strategy.chunk_size, stop).await?,
        ChunkingKind::Recursive | ChunkingKind::FixedSize => pieces,
    };
    if chunks.is_empty() {
        return Err(Stop::Failed(format!("no text found in {}", file.filename)));
    }
    let total = chunks.len() as u64;
    let mut done = source.chunks_done.min(total);
    if !store.update_source(&source.id, &progress(Some(total), done)).map_err(store_err)? {
        return Err(Stop::Abandoned);
    }
    for batch in chunks[done as usize..].chunks(embed::BATCH) {
        if *stop.borrow() {
            return Err(Stop::Abandoned);
        }
        let vectors = inner
            .embedder
            .embed(&job.tenant, &kb.embedding_model, batch)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let points: Vec<ChunkPoint> = batch
            .iter()
            .zip(vectors)
            .enumerate()
            .map(|(i, (text, dense))| {
                let index = done as usize + i;
                ChunkPoint {
                    id: point_id(&source.id, index as u64),
                    dense,
                    text: text.clone(),
                    payload: chunk_payload(&source, &file, index, text),
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
            tracing::error!(source_id = %source.id, "vector store: {e}");
            Stop::Failed("could not store the chunks' vectors".into())
        })?;
        done += batch.len() as u64;
        if !store.update_source(&source.id, &progress(Some(total), done)).map_err(store_err)? {
            // Deleted meanwhile: take back what this batch wrote (the whole collection if
            // the knowledge base itself is gone, since the upsert may have recreated it).
            let kb_gone = store.get_kb(&job.tenant, &kb.id).map_err(store_err)?.is_none();
            let vstore = inner.vectors.clone();
            let (kb_id, source_id) = (kb.id.clone(), source.id.clone());
            let _ = blocking(move || {
                if kb_gone { vstore.drop_collection(&kb_id) } else { vstore.delete_where(&kb_id, "source_id", &source_id) }
            })
            .await;
            return Err(Stop::Abandoned);
        }
    }
    let completed = SourceProgress { status: SourceStatus::Completed, error: None, chunks_total: Some(total), chunks_done: total };
    store.update_source(&source.id, &completed).map_err(store_err)?;
    Ok(total as usize)
}

/// Semantic chunks of a document's sentences: every sentence is embedded (batch by batch,
/// stopping with the server), then grouped where the topic changes. A resumed ingestion
/// embeds them again and gets the same chunks, since the vectors are the same.
async fn semantic_chunks(
    inner: &Inner,
    job: &Job,
    model: &str,
    sentences: &[String],
    size: usize,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<String>, Stop> {
    let mut vectors = Vec::with_capacity(sentences.len());
    for batch in sentences.chunks(embed::BATCH) {
        if *stop.borrow() {
            return Err(Stop::Abandoned);
        }
        let trimmed: Vec<String> = batch.iter().map(|s| s.trim().to_owned()).collect();
        vectors.extend(inner.embedder.embed(&job.tenant, model, &trimmed).await.map_err(|e| Stop::Failed(e.to_string()))?);
    }
    Ok(chunk::semantic(sentences, &vectors, size))
}
