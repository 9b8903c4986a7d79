//! The embedded vector store: one qdrant-edge shard per collection under
//! `<data_dir>/vectors/<collection>/`, with a dense vector `dense` (cosine) and a sparse
//! vector `bm25` (BM25 term weights, IDF applied by Qdrant at query time). The shard's
//! write-ahead log makes an upsert durable once [`VectorStore::flush`] returns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use qdrant_edge::{
    CountRequest, Distance, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder, EdgeVectorParamsBuilder,
    Filter, Fusion, Modifier, NamedQuery, Payload, PointId, PointInsertOperations, PointOperations,
    PointStructPersisted, PrefetchBuilder, QueryEnum, QueryRequestBuilder, ScoringQuery, UpdateOperation,
    VectorInternal, VectorStructInternal, VectorStructPersisted, WithPayloadInterface,
};
use super::bm25::Bm25;
use super::filter::QdrantFilter;
use super::{
    ChunkPoint, DENSE, Hit, Query, RRF_K, SPARSE, SearchType, VectorError, VectorResult, VectorStore, prefetch_depth,
};

fn err(context: &str) -> impl Fn(qdrant_edge::OperationError) -> VectorError + '_ {
    move |e| VectorError(format!("{context}: {e}"))
}

/// qdrant-edge shards under one directory.
pub struct EdgeStore {
    dir: PathBuf,
    shards: Mutex<HashMap<String, Arc<EdgeShard>>>,
    bm25: Bm25,
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
        Ok(Self { dir: dir.to_owned(), shards: Mutex::new(HashMap::new()), bm25 })
    }

    fn path(&self, collection: &str) -> VectorResult<PathBuf> {
        let safe = !collection.is_empty()
            && collection.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !safe {
            return Err(VectorError(format!("invalid collection name {collection:?}")));
        }
        Ok(self.dir.join(collection))
    }

    /// The open shard, loading it from disk; `create_dim` creates a missing one.
    fn shard(&self, collection: &str, create_dim: Option<usize>) -> VectorResult<Option<Arc<EdgeShard>>> {
        let mut shards = self.shards.lock().map_err(|_| VectorError("vector store lock poisoned".into()))?;
        if let Some(s) = shards.get(collection) {
            return Ok(Some(s.clone()));
        }
        let path = self.path(collection)?;
        let shard = if path.join("edge_config.json").exists() {
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
        Ok(Some(shard))
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
            .update(UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                points,
            ))))
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
        let shard = self.shards.lock().map_err(|_| VectorError("vector store lock poisoned".into()))?.remove(collection);
        drop(shard);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VectorError(format!("removing {}: {e}", path.display()))),
        }
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
        Query { dense: Some(dense), text: text.into(), kind, limit: 10, filter: MetadataFilter::parse(&filter).unwrap(), min_score: None }
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
            let hits = store.search("kb_1", &query(SearchType::Vector, vec![1.0, 0.0], "", json!({"year": {"$gte": 2005, "$lt": 2020}}))).unwrap();
            assert_eq!(hits.len(), 1);
            assert_eq!(hits[0].payload["metadata"]["year"], 2011);
            let hits = store.search("kb_1", &query(SearchType::Vector, vec![1.0, 0.0], "", json!({"lang": {"$ne": "en"}}))).unwrap();
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
        store.drop_collection("kb_1").unwrap();
        assert_eq!(store.count("kb_1", None).unwrap(), 0);
        assert!(!dir.path().join("kb_1").exists());
        assert!(store.upsert("../evil", vec![point("s", 0, vec![1.0], "t", json!({}))]).is_err());
    }
}
