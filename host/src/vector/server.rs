//! The Qdrant server backend: one collection per knowledge base on a Qdrant server or
//! cluster, reached over gRPC with the official client. Collections are laid out as the
//! embedded store lays out its shards (dense `dense`, cosine; sparse `bm25` with the
//! `idf` modifier; the same payload), the host computes the BM25 vectors with the same
//! model ([`super::bm25`]) and filters come from the same translation
//! ([`MetadataFilter::to_qdrant`]), so both backends rank and filter alike.
//!
//! Collection names are `<prefix><knowledge base id>`: several Tensoras deployments
//! can share one server under different prefixes.
//!
//! Durability: every write is sent with `wait: true`, so the server has applied it (and
//! written it to its write-ahead log, on as many replicas as the collection's write
//! consistency asks) before the call returns; [`VectorStore::flush`] has nothing left
//! to do.
//!
//! The client is async and [`VectorStore`] is not: calls block on the runtime that
//! opened the store, through its handle. That is what the callers do — they run store
//! calls on tokio's blocking pool — and the only correct way: blocking on a runtime
//! from one of its async worker threads would panic.

use std::time::Duration;

use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance,
    FieldType, Filter, Modifier, NamedVectors, PointStruct, PrefetchQueryBuilder, Query as QdrantQuery, QueryPointsBuilder,
    Range, Rrf, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder, Vector, VectorInput,
    VectorParamsBuilder, VectorsConfigBuilder, r#match::MatchValue, point_id::PointIdOptions,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};

use super::bm25::Bm25;
use super::filter::{FieldCondition, QdrantFilter};
use super::{
    ChunkPoint, DENSE, Hit, MetadataFilter, Query, RRF_K, SPARSE, SearchType, VectorError, VectorResult, VectorStore,
    prefetch_depth,
};

/// Where the server is and how collections are named.
#[derive(Clone)]
pub struct ServerOptions {
    /// gRPC endpoint, e.g. `http://localhost:6334` (`https://` for TLS).
    pub url: String,
    /// API key (or JWT) the server requires, if any.
    pub api_key: Option<String>,
    /// Put before every knowledge base id to name its collection.
    pub collection_prefix: String,
}

/// The API key stays out of debug output (and so out of logs).
impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection_prefix", &self.collection_prefix)
            .finish()
    }
}

/// Collections on a Qdrant server.
pub struct ServerStore {
    client: Qdrant,
    prefix: String,
    runtime: tokio::runtime::Handle,
    bm25: Bm25,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerStore(prefix {:?})", self.prefix)
    }
}

/// Letters, digits, `_` and `-`: valid in a Qdrant collection name and a URL path.
fn name_ok(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether the server answered that the collection does not exist.
fn not_found(e: &QdrantError) -> bool {
    matches!(e, QdrantError::ResponseError { status } if status.code() == tonic::Code::NotFound)
}

fn err(context: &str) -> impl Fn(QdrantError) -> VectorError + '_ {
    move |e| VectorError(format!("{context}: {e}"))
}

impl ServerStore {
    /// Connects and checks that the server answers (so a wrong URL or key stops the
    /// start-up instead of the first ingestion). Must run inside the tokio runtime whose
    /// blocking pool will call the store.
    pub async fn connect(options: &ServerOptions) -> anyhow::Result<Self> {
        if !name_ok(&options.collection_prefix) {
            anyhow::bail!("Qdrant collection prefix {:?} must be letters, digits, '_' or '-'", options.collection_prefix);
        }
        let url = &options.url;
        let client = Qdrant::from_url(url)
            .api_key(options.api_key.clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            // The built-in check prints to stdout; the health check below reports instead.
            .skip_compatibility_check()
            .build()
            .map_err(|e| anyhow::anyhow!("Qdrant server URL {url:?}: {e}"))?;
        let health = client
            .health_check()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the Qdrant server at {url} (gRPC, usually port 6334): {e}"))?;
        tracing::info!(url = %url, version = %health.version, prefix = %options.collection_prefix, "using the Qdrant server");
        Ok(Self {
            client,
            prefix: options.collection_prefix.clone(),
            runtime: tokio::runtime::Handle::current(),
            bm25: Bm25::new()?,
        })
    }

    /// The server-side name of a knowledge base's collection.
    fn name(&self, collection: &str) -> VectorResult<String> {
        if collection.is_empty() || !name_ok(collection) {
            return Err(VectorError(format!("invalid collection name {collection:?}")));
        }
        Ok(format!("{}{collection}", self.prefix))
    }

    /// Runs a client call to completion on the store's runtime (see the module docs).
    fn block_on<F: Future>(&self, call: F) -> F::Output {
        self.runtime.block_on(call)
    }

    /// Creates the collection unless it exists, with an index on `source_id` for
    /// deleting and counting a data source's chunks.
    async fn ensure_collection(&self, name: &str, dim: usize) -> VectorResult<()> {
        if self.client.collection_exists(name).await.map_err(err("checking the collection"))? {
            return Ok(());
        }
        let mut dense = VectorsConfigBuilder::default();
        dense.add_named_vector_params(DENSE, VectorParamsBuilder::new(dim as u64, Distance::Cosine));
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(SPARSE, SparseVectorParamsBuilder::default().modifier(Modifier::Idf));
        let created = self
            .client
            .create_collection(CreateCollectionBuilder::new(name).vectors_config(dense).sparse_vectors_config(sparse))
            .await;
        if let Err(e) = created {
            // Another writer may have created it in between.
            if !self.client.collection_exists(name).await.map_err(err("checking the collection"))? {
                return Err(err("creating the collection")(e));
            }
        }
        self.client
            .create_field_index(CreateFieldIndexCollectionBuilder::new(name, "source_id", FieldType::Keyword).wait(true))
            .await
            .map_err(err("indexing source_id"))?;
        Ok(())
    }
}

/// One field condition as a gRPC message.
fn condition(c: &FieldCondition) -> VectorResult<Condition> {
    Ok(match c {
        FieldCondition::Match { key, value } => Condition::matches(key, match_value(value)?),
        FieldCondition::MatchAny { key, values } => {
            let strings: Option<Vec<String>> = values.iter().map(|v| v.as_str().map(str::to_owned)).collect();
            let ints: Option<Vec<i64>> = values.iter().map(Value::as_i64).collect();
            match (strings, ints) {
                (Some(s), _) => Condition::matches(key, s),
                (None, Some(i)) => Condition::matches(key, i),
                (None, None) => {
                    return Err(VectorError(format!("filter on {key}: values must be all strings or all 64-bit integers")));
                }
            }
        }
        FieldCondition::Range { key, gt, gte, lt, lte } => {
            Condition::range(key, Range { gt: *gt, gte: *gte, lt: *lt, lte: *lte })
        }
    })
}

fn match_value(v: &Value) -> VectorResult<MatchValue> {
    match v {
        Value::String(s) => Ok(s.clone().into()),
        Value::Bool(b) => Ok((*b).into()),
        Value::Number(n) => n.as_i64().map(MatchValue::from).ok_or_else(|| VectorError(format!("cannot match {n} exactly"))),
        other => Err(VectorError(format!("cannot match {other}"))),
    }
}

/// A whole filter as a gRPC message.
fn filter(f: &QdrantFilter) -> VectorResult<Filter> {
    Ok(Filter {
        must: f.must.iter().map(condition).collect::<VectorResult<_>>()?,
        must_not: f.must_not.iter().map(condition).collect::<VectorResult<_>>()?,
        ..Filter::default()
    })
}

fn metadata_filter(f: &MetadataFilter) -> VectorResult<Option<Filter>> {
    if f.is_empty() { Ok(None) } else { filter(&f.to_qdrant()).map(Some) }
}

impl VectorStore for ServerStore {
    fn upsert(&self, collection: &str, points: Vec<ChunkPoint>) -> VectorResult<()> {
        let Some(dim) = points.first().map(|p| p.dense.len()) else {
            return Ok(());
        };
        let name = self.name(collection)?;
        let points: Vec<PointStruct> = points
            .into_iter()
            .map(|p| {
                let keywords = self.bm25.document(&p.text);
                let vectors = NamedVectors::default()
                    .add_vector(DENSE, Vector::new_dense(p.dense))
                    .add_vector(SPARSE, Vector::new_sparse(keywords.indices, keywords.values));
                PointStruct::new(p.id, vectors, Payload::from(p.payload))
            })
            .collect();
        self.block_on(async {
            self.ensure_collection(&name, dim).await?;
            self.client
                .upsert_points(UpsertPointsBuilder::new(&name, points).wait(true))
                .await
                .map_err(err("upserting points"))?;
            Ok(())
        })
    }

    fn delete_where(&self, collection: &str, field: &str, value: &str) -> VectorResult<()> {
        let name = self.name(collection)?;
        let selector = filter(&QdrantFilter::field_eq(field, value))?;
        match self.block_on(self.client.delete_points(DeletePointsBuilder::new(name).points(selector).wait(true))) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(err("deleting points")(e)),
        }
    }

    fn drop_collection(&self, collection: &str) -> VectorResult<()> {
        let name = self.name(collection)?;
        match self.block_on(self.client.delete_collection(name)) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(err("dropping the collection")(e)),
        }
    }

    fn search(&self, collection: &str, q: &Query) -> VectorResult<Vec<Hit>> {
        let name = self.name(collection)?;
        let filter = metadata_filter(&q.filter)?;
        let dense = || -> VectorResult<QdrantQuery> {
            let v = q.dense.clone().ok_or_else(|| VectorError("vector search needs a query embedding".into()))?;
            Ok(QdrantQuery::new_nearest(VectorInput::new_dense(v)))
        };
        let sparse = || {
            let v = self.bm25.query(&q.text);
            QdrantQuery::new_nearest(VectorInput::new_sparse(v.indices, v.values))
        };
        let mut req = QueryPointsBuilder::new(name).limit(q.limit as u64).with_payload(true);
        req = match q.kind {
            SearchType::Vector => req.query(dense()?).using(DENSE),
            SearchType::Keyword => req.query(sparse()).using(SPARSE),
            SearchType::Hybrid => {
                let depth = prefetch_depth(q.limit) as u64;
                let mut dense_stage = PrefetchQueryBuilder::default().query(dense()?).using(DENSE).limit(depth);
                let mut sparse_stage = PrefetchQueryBuilder::default().query(sparse()).using(SPARSE).limit(depth);
                if let Some(f) = &filter {
                    dense_stage = dense_stage.filter(f.clone());
                    sparse_stage = sparse_stage.filter(f.clone());
                }
                req.add_prefetch(dense_stage)
                    .add_prefetch(sparse_stage)
                    .query(QdrantQuery::new_rrf(Rrf { k: Some(RRF_K as u32), weights: Vec::new() }))
            }
        };
        if let Some(f) = filter {
            req = req.filter(f);
        }
        if let Some(min) = q.min_score {
            req = req.score_threshold(min);
        }
        let found = match self.block_on(self.client.query(req)) {
            Ok(r) => r.result,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(err("searching")(e)),
        };
        Ok(found
            .into_iter()
            .filter_map(|p| match p.id?.point_id_options? {
                PointIdOptions::Num(id) => Some(Hit { id, score: p.score, payload: Map::from(Payload::from(p.payload)) }),
                PointIdOptions::Uuid(_) => None,
            })
            .collect())
    }

    fn count(&self, collection: &str, field_eq: Option<(&str, &str)>) -> VectorResult<u64> {
        let name = self.name(collection)?;
        let mut req = CountPointsBuilder::new(name).exact(true);
        if let Some((field, value)) = field_eq {
            req = req.filter(filter(&QdrantFilter::field_eq(field, value))?);
        }
        match self.block_on(self.client.count(req)) {
            Ok(r) => Ok(r.result.map_or(0, |r| r.count)),
            Err(e) if not_found(&e) => Ok(0),
            Err(e) => Err(err("counting points")(e)),
        }
    }

    /// Writes were acknowledged with `wait: true`: nothing is pending (module docs).
    fn flush(&self, _collection: &str) -> VectorResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_become_grpc_conditions() -> Result<(), VectorError> {
        let f = MetadataFilter::parse(&json!({"lang": "en", "tag": {"$in": [1, 2]}, "score": 0.5, "draft": {"$ne": true}}))
            .map_err(VectorError)?;
        let g = filter(&f.to_qdrant())?;
        assert_eq!(g.must.len(), 3);
        assert_eq!(g.must_not.len(), 1);
        let bad = QdrantFilter { must: vec![FieldCondition::Match { key: "k".into(), value: json!([1]) }], must_not: Vec::new() };
        assert!(filter(&bad).is_err());
        Ok(())
    }

    #[test]
    fn options_never_show_the_api_key() {
        let o = ServerOptions { url: "http://q:6334".into(), api_key: Some("sekrit".into()), collection_prefix: "t_".into() };
        assert!(!format!("{o:?}").contains("sekrit"));
    }
}
