//! Knowledge bases: documents cut into chunks, embedded with the knowledge base's model
//! and stored in the vector store, retrievable by meaning, keywords or both.

pub mod chunk;

pub use chunk::{ChunkingKind, ChunkingStrategy};
