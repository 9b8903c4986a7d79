//! The embedded vector store: one qdrant-edge shard per collection under
//! `<data_dir>/vectors/<collection>/`, with a dense vector `dense` (cosine) and a sparse
//! vector `bm25` (BM25 term weights, IDF applied by Qdrant at query time). The shard's
//! write-ahead log makes an upsert durable once [`VectorStore::flush`] returns.
//!
//! Writes land in an appendable segment, which search scans exactly. [`VectorStore::index`]
//! (after ingestion) and opening a shard start qdrant-edge's optimizers on a background
//! thread: segments past the indexing threshold (qdrant's default, 10 MB of vectors, about
//! 6,500 chunks at 384 dimensions) become HNSW-indexed segments. The optimizers swap the
//! segments in behind proxies, so searches and upserts go on meanwhile and nothing written
//! during a build is lost; a build cut short by a crash leaves only its temporary segment,
//! removed on the next open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::bm25::Bm25;
use super::filter::QdrantFilter;
use super::{ChunkPoint, DENSE, Hit, Query, RRF_K, SPARSE, SearchType, VectorError, VectorResult, VectorStore, prefetch_depth};
use qdrant_edge::{
    CountRequest, Distance, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder, Filter, Fusion,
    Modifier, NamedQuery, Payload, PointId, PointInsertOperations, PointOperations, PointStructPersisted, PrefetchBuilder,
    QueryEnum, QueryRequestBuilder, ScoringQuery, UpdateOperation, VectorInternal, VectorStructInternal, VectorStructPersisted,
    WithPayloadInterface,
};

/// Where qdrant-edge's optimizers build segments before swapping them in.
const TEMP_SEGMENTS: &str = "temp_segments";

fn err(context: &str) -> impl Fn(qdrant_edge::OperationError) -> VectorError + '_ {
    move |e| VectorError(format!("{context}: {e}"))
}

/// qdrant-edge shards under one directory.
pub struct EdgeStore {
    dir: PathBuf,
    shards: Mutex<HashMap<String, Arc<EdgeShard>>>,
    bm25: Bm25,
    /// Collections whose index is being built in the background (at most one build each).
    building: Arc<Mutex<HashMap<String, Build>>>,
}

/// What happened to a collection while its background build ran.
#[derive(Debug, Default)]
struct Build {
    /// More was written and indexing was asked for again: run the optimizers once more.
    again: bool,
    /// The collection was dropped: the build thread removes its files when it stops.
    dropped: bool,
}

fn lock<T>(m: &Mutex<T>) -> VectorResult<MutexGuard<'_, T>> {
    m.lock().map_err(|_| VectorError("vector store lock poisoned".into()))
}

impl std::fmt::Debug for EdgeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EdgeStore({})", self.dir.display())
    }
}

impl EdgeStore {
    /// Opens (lazily, per collection) the shards under `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let bm25 = Bm25::new()?;
        Ok(Self { dir: dir.to_owned(), shards: Mutex::new(HashMap::new()), bm25, building: Arc::default() })
    }

    fn path(&self, collection: &str) -> VectorResult<PathBuf> {
        let safe = !collection.is_empty() && collection.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !safe {
            return Err(VectorError(format!("invalid collection name {collection:?}")));
        }
        Ok(self.dir.join(collection))
    }

    /// The open shard, loading it from disk; `create_dim` creates a missing one.
    fn shard(&self, collection: &str, create_dim: Option<usize>) -> VectorResult<Option<Arc<EdgeShard>>> {
        let mut shards = lock(&self.shards)?;
        if let Some(s) = shards.get(collection) {
            return Ok(Some(s.clone()));
        }
        if lock(&self.building)?.get(collection).is_some_and(|b| b.dropped) {
            // Dropped while its index was being built: the build thread removes the files
            // when it stops; until then the collection must not come back from them.
            return Ok(None);
        }
        let path = self.path(collection)?;
        let existing = path.join("edge_config.json").exists();
        let shard = if existing {
            // No build of this shard runs before it is loaded, so a temporary segment is
            // the remains of one cut short by a crash.
            remove_dir(&path.join(TEMP_SEGMENTS))?;
            EdgeShard::load(&path, None).map_err(err("loading vector shard"))?
        } else if let Some(dim) = create_dim {
            let config = EdgeConfigBuilder::new()
                .vector(DENSE, EdgeVectorParamsBuilder::new(dim, Distance::Cosine).build())
                .sparse_vector(SPARSE, EdgeSparseVectorParamsBuilder::new().modifier(Modifier::Idf).build())
                .max_search_threads(2)
                .build();
            EdgeShard::new(&path, config).map_err(err("creating vector shard"))?
        } else {
            return Ok(None);
        };
        let shard = Arc::new(shard);
        shards.insert(collection.to_owned(), shard.clone());
        if existing {
            // Written before a restart, possibly never indexed (a crash, an older version).
            self.start_build(collection, shard.clone())?;
        }
        Ok(Some(shard))
    }

    /// Runs the optimizers over `shard` on a thread of their own, or, if a build of the
    /// collection is running, has it run them once more when it is done.
    fn start_build(&self, collection: &str, shard: Arc<EdgeShard>) -> VectorResult<()> {
        let mut building = lock(&self.building)?;
        if let Some(build) = building.get_mut(collection) {
            build.again = true;
            return Ok(());
        }
        building.insert(collection.to_owned(), Build::default());
        let (registry, name) = (self.building.clone(), collection.to_owned());
        let spawned =
            std::thread::Builder::new().name("vector-index".into()).spawn(move || build_in_background(&registry, &name, shard));
        if let Err(e) = spawned {
            building.remove(collection);
            return Err(VectorError(format!("starting the index build: {e}")));
        }
        Ok(())
    }

    fn filter(value: serde_json::Value) -> VectorResult<Filter> {
        serde_json::from_value(value).map_err(|e| VectorError(format!("building filter: {e}")))
    }
}

impl VectorStore for EdgeStore {
    fn upsert(&self, collection: &str, points: Vec<ChunkPoint>) -> VectorResult<()> {
        let Some(dim) = points.first().map(|p| p.dense.len()) else {
            return Ok(());
        };
        let Some(shard) = self.shard(collection, Some(dim))? else {
            return Err(VectorError("vector shard missing".into()));
        };
        let points = points
            .into_iter()
            .map(|p| {
                let vectors = HashMap::from([
                    (DENSE.to_owned(), VectorInternal::from(p.dense)),
                    (SPARSE.to_owned(), VectorInternal::from(self.bm25.document(&p.text))),
                ]);
                PointStructPersisted {
                    id: PointId::NumId(p.id),
                    vector: VectorStructPersisted::from(VectorStructInternal::Named(vectors)),
                    payload: Some(Payload::from(p.payload)),
                }
            })
            .collect();
        shard
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(points))))
            .map_err(err("upserting points"))
    }

    fn delete_where(&self, collection: &str, field: &str, value: &str) -> VectorResult<()> {
        let Some(shard) = self.shard(collection, None)? else {
            return Ok(());
        };
        let filter = Self::filter(QdrantFilter::field_eq(field, value).to_json())?;
        shard
            .update(UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter)))
            .map_err(err("deleting points"))?;
        shard.flush().map_err(err("flushing vector shard"))
    }

    fn drop_collection(&self, collection: &str) -> VectorResult<()> {
        let path = self.path(collection)?;
        // Both locks held (in `shard`'s order), so no one reloads the collection between
        // its removal from the map and the build registry learning of the drop.
        let mut shards = lock(&self.shards)?;
        drop(shards.remove(collection));
        let mut building = lock(&self.building)?;
        if let Some(build) = building.get_mut(collection) {
            // A build cannot be stopped midway and would write into removed directories:
            // its thread removes the files once it stops (gone from the API already).
            build.dropped = true;
            return Ok(());
        }
        remove_dir(&path)
    }

    fn search(&self, collection: &str, q: &Query) -> VectorResult<Vec<Hit>> {
        let Some(shard) = self.shard(collection, None)? else {
            return Ok(Vec::new());
        };
        let filter = if q.filter.is_empty() { None } else { Some(Self::filter(q.filter.to_qdrant_json())?) };
        let dense = || -> VectorResult<ScoringQuery> {
            let v = q.dense.clone().ok_or_else(|| VectorError("vector search needs a query embedding".into()))?;
            Ok(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery { query: VectorInternal::from(v), using: Some(DENSE.into()) })))
        };
        let sparse = || {
            let v = self.bm25.query(&q.text);
            ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery { query: VectorInternal::from(v), using: Some(SPARSE.into()) }))
        };
        let mut req = QueryRequestBuilder::new(q.limit).with_payload(WithPayloadInterface::Bool(true));
        req = match q.kind {
            SearchType::Vector => req.query(dense()?),
            SearchType::Keyword => req.query(sparse()),
            SearchType::Hybrid => {
                let depth = prefetch_depth(q.limit);
                let mut dense_stage = PrefetchBuilder::new(depth).query(dense()?);
                let mut sparse_stage = PrefetchBuilder::new(depth).query(sparse());
                if let Some(f) = &filter {
                    dense_stage = dense_stage.filter(f.clone());
                    sparse_stage = sparse_stage.filter(f.clone());
                }
                req.add_prefetch(dense_stage.build())
                    .add_prefetch(sparse_stage.build())
                    .query(ScoringQuery::Fusion(Fusion::Rrf { k: RRF_K, weights: None }))
            }
        };
        if let Some(f) = filter {
            req = req.filter(f);
        }
        if let Some(min) = q.min_score {
            req = req.score_threshold(min);
        }
        let found = shard.query(req.build()).map_err(err("searching"))?;
        Ok(found
            .into_iter()
            .filter_map(|p| match p.id {
                PointId::NumId(id) => Some(Hit { id, score: p.score, payload: p.payload.map(|pl| pl.0).unwrap_or_default() }),
                PointId::Uuid(_) => None,
            })
            .collect())
    }

    fn count(&self, collection: &str, field_eq: Option<(&str, &str)>) -> VectorResult<u64> {
        let Some(shard) = self.shard(collection, None)? else {
            return Ok(0);
        };
        let filter = match field_eq {
            Some((field, value)) => Some(Self::filter(QdrantFilter::field_eq(field, value).to_json())?),
            None => None,
        };
        let n = shard.count(CountRequest { filter, exact: true }).map_err(err("counting points"))?;
        Ok(n as u64)
    }

    fn flush(&self, collection: &str) -> VectorResult<()> {
        match self.shard(collection, None)? {
            Some(shard) => shard.flush().map_err(err("flushing vector shard")),
            None => Ok(()),
        }
    }

    fn index(&self, collection: &str) -> VectorResult<()> {
        match self.shard(collection, None)? {
            Some(shard) => self.start_build(collection, shard),
            None => Ok(()),
        }
    }
}

/// The body of a build thread: optimizes until nothing more was asked for, then leaves the
/// registry (removing the files if the collection was dropped meanwhile).
fn build_in_background(registry: &Mutex<HashMap<String, Build>>, collection: &str, shard: Arc<EdgeShard>) {
    let started = Instant::now();
    tracing::info!(collection, "optimizing vector segments");
    loop {
        if let Err(e) = shard.optimize() {
            // The segments stay as they were: searchable, only not (all) indexed.
            tracing::warn!(collection, "optimizing vector segments: {e}");
        }
        let Ok(mut building) = registry.lock() else { return };
        if let Some(build) = building.get_mut(collection).filter(|b| b.again && !b.dropped) {
            build.again = false;
            continue;
        }
        let dropped = building.remove(collection).is_some_and(|b| b.dropped);
        let path = shard.path().to_owned();
        let info = shard.info().ok();
        // Still under the lock, so that a drop of the collection either saw this build
        // (and left the files to it) or comes after them.
        drop(shard);
        if dropped {
            if let Err(e) = remove_dir(&path) {
                tracing::warn!(collection, "removing a dropped collection: {e}");
            }
            return;
        }
        drop(building);
        let secs = started.elapsed().as_secs_f64();
        match info {
            Some(i) => tracing::info!(
                collection,
                secs,
                points = i.points_count,
                indexed_vectors = i.indexed_vectors_count,
                segments = i.segments_count,
                "vector segments optimized"
            ),
            None => tracing::info!(collection, secs, "vector segments optimized"),
        }
        return;
    }
}

/// Removes a directory tree; a missing one is not an error.
fn remove_dir(path: &Path) -> VectorResult<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VectorError(format!("removing {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{MetadataFilter, point_id};
    use serde_json::{Value, json};

    fn point(source: &str, i: u64, dense: Vec<f32>, text: &str, meta: Value) -> ChunkPoint {
        let payload = json!({"source_id": source, "chunk_index": i, "text": text, "metadata": meta});
        ChunkPoint { id: point_id(source, i), dense, text: text.into(), payload: payload.as_object().unwrap().clone() }
    }

    fn query(kind: SearchType, dense: Vec<f32>, text: &str, filter: Value) -> Query {
        Query {
            dense: Some(dense),
            text: text.into(),
            kind,
            limit: 10,
            filter: MetadataFilter::parse(&filter).unwrap(),
            min_score: None,
        }
    }

    #[test]
    fn upsert_is_idempotent_search_filters_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EdgeStore::open(dir.path()).unwrap();
            assert!(store.search("kb_x", &query(SearchType::Vector, vec![1.0, 0.0], "x", Value::Null)).unwrap().is_empty());
            let points = vec![
                point("ds_a", 0, vec![1.0, 0.0], "the zebra crossing is painted blue", json!({"year": 2001, "lang": "en"})),
                point("ds_a", 1, vec![0.0, 1.0], "apples and oranges are fruit", json!({"year": 2011, "lang": "en"})),
                point("ds_b", 0, vec![0.7, 0.7], "ein Zebra ist gestreift", json!({"year": 2020, "lang": "de"})),
            ];
            store.upsert("kb_1", points.clone()).unwrap();
            store.upsert("kb_1", points).unwrap();
            store.flush("kb_1").unwrap();
            assert_eq!(store.count("kb_1", None).unwrap(), 3, "no duplicates after a second upsert");

            let hits = store.search("kb_1", &query(SearchType::Vector, vec![1.0, 0.1], "", Value::Null)).unwrap();
            assert_eq!(hits[0].payload["text"], "the zebra crossing is painted blue");
            let hits = store.search("kb_1", &query(SearchType::Keyword, vec![], "apples", Value::Null)).unwrap();
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].payload["chunk_index"], 1);
            let hits = store.search("kb_1", &query(SearchType::Hybrid, vec![0.0, 1.0], "zebra", Value::Null)).unwrap();
            assert_eq!(hits.len(), 3);
            let hits = store.search("kb_1", &query(SearchType::Vector, vec![1.0, 0.0], "", json!({"lang": "de"}))).unwrap();
            assert_eq!(hits.len(), 1);
            let hits = store
                .search("kb_1", &query(SearchType::Vector, vec![1.0, 0.0], "", json!({"year": {"$gte": 2005, "$lt": 2020}})))
                .unwrap();
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].payload["metadata"]["year"], 2011);
            let hits =
                store.search("kb_1", &query(SearchType::Vector, vec![1.0, 0.0], "", json!({"lang": {"$ne": "en"}}))).unwrap();
            assert_eq!(hits.len(), 1);
            let mut q = query(SearchType::Vector, vec![1.0, 0.0], "", Value::Null);
            q.min_score = Some(0.9);
            assert_eq!(store.search("kb_1", &q).unwrap().len(), 1);

            store.delete_where("kb_1", "source_id", "ds_a").unwrap();
            assert_eq!(store.count("kb_1", None).unwrap(), 1);
        }
        let store = EdgeStore::open(dir.path()).unwrap();
        assert_eq!(store.count("kb_1", None).unwrap(), 1, "reopened from disk");
        assert_eq!(store.count("kb_1", Some(("source_id", "ds_b"))).unwrap(), 1);
        // Reopening started an index build: the drop is at once visible, the files go
        // when the build stops.
        store.drop_collection("kb_1").unwrap();
        assert_eq!(store.count("kb_1", None).unwrap(), 0);
        wait_for_builds(&store);
        assert_eq!(store.count("kb_1", None).unwrap(), 0);
        assert!(!dir.path().join("kb_1").exists());
        assert!(store.upsert("../evil", vec![point("s", 0, vec![1.0], "t", json!({}))]).is_err());
    }

    /// A deterministic pseudo-random unit vector per index (splitmix64 per coordinate), so
    /// each point is its own unique nearest neighbour in 384 dimensions.
    fn spread(i: u64) -> Vec<f32> {
        let coord = |d: u64| {
            let mut x = (i * 384 + d).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((x ^ (x >> 31)) % 2001) as f32 - 1000.0
        };
        let v: Vec<f32> = (0..384u64).map(coord).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn wait_for_builds(store: &EdgeStore) {
        let deadline = Instant::now() + std::time::Duration::from_secs(300);
        while !store.building.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "index build did not finish");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[test]
    fn background_index_keeps_writes_and_results() {
        // Past the indexing threshold (10 MB of 384-dimensional vectors, ~6,700 points).
        const N: u64 = 7_500;
        let dir = tempfile::tempdir().unwrap();
        let store = EdgeStore::open(dir.path()).unwrap();
        for batch in (0..N).collect::<Vec<_>>().chunks(500) {
            let points = batch.iter().map(|&i| point("ds_a", i, spread(i), &format!("chunk number {i}"), json!({}))).collect();
            store.upsert("kb_big", points).unwrap();
        }
        store.flush("kb_big").unwrap();
        store.index("kb_big").unwrap();
        // Written while the build runs: must survive the segment swap.
        let late: Vec<ChunkPoint> = (N..N + 100).map(|i| point("ds_b", i, spread(i), "late", json!({}))).collect();
        store.upsert("kb_big", late).unwrap();
        store.flush("kb_big").unwrap();
        store.delete_where("kb_big", "source_id", "ds_b").unwrap();
        store.upsert("kb_big", vec![point("ds_c", 0, spread(N + 500), "last", json!({}))]).unwrap();
        store.flush("kb_big").unwrap();
        wait_for_builds(&store);

        let info = store.shard("kb_big", None).unwrap().unwrap().info().unwrap();
        assert!(info.indexed_vectors_count >= N as usize, "HNSW built: {info:?}");
        assert_eq!(store.count("kb_big", None).unwrap(), N + 1);
        for i in [0, 1234, N - 1] {
            let hits = store.search("kb_big", &query(SearchType::Vector, spread(i), "", Value::Null)).unwrap();
            assert_eq!(hits[0].id, point_id("ds_a", i), "nearest of point {i}");
        }
        let hits = store.search("kb_big", &query(SearchType::Keyword, vec![], "last", Value::Null)).unwrap();
        assert_eq!(hits.len(), 1);

        // Reopened: still all there; dropping during a build leaves no files behind.
        drop(store);
        let store = EdgeStore::open(dir.path()).unwrap();
        assert_eq!(store.count("kb_big", None).unwrap(), N + 1);
        store.drop_collection("kb_big").unwrap();
        wait_for_builds(&store);
        assert!(!dir.path().join("kb_big").exists());
    }
}
