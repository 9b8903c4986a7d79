//! One error type for every platform call (`ai`, `kb`, `files`, `kv`).

use std::fmt;

use crate::tool::ToolError;
use crate::wit::platform::tensoras::platform::{ai, files, kv, retrieval};

/// Why a platform call was refused or failed. It is data, never a trap: handle it, or
/// pass it on with `?` (into a [`ToolError`], or a [`String`]).
///
/// A tool that fails passing on a [`Error::NotPermitted`] makes its caller's request a
/// 403 `permission_denied`, not a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The manifest does not grant this (`grants.models`, `grants.knowledge_bases`,
    /// `grants.files`, `grants.kv`); the text names what was refused.
    NotPermitted(String),
    /// The request is invalid (what the HTTP API answers with a 400).
    InvalidRequest(String),
    /// No such model, or no such knowledge base or file for this tenant.
    NotFound(String),
    /// The invocation's budget (`limits.max_model_calls`, `limits.max_generated_tokens`)
    /// is spent, or calls nest deeper than the server allows.
    LimitExceeded(String),
    /// A key or value over the key-value store's limits.
    TooLarge(String),
    /// The server is at capacity; a later call may succeed.
    Overloaded(String),
    /// Anything else.
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotPermitted(m) => write!(f, "not permitted: {m}"),
            Error::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
            Error::TooLarge(m) => write!(f, "too large: {m}"),
            Error::Overloaded(m) => write!(f, "overloaded: {m}"),
            Error::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        ToolError::Failed(e.to_string())
    }
}

impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

impl From<ai::AiError> for Error {
    fn from(e: ai::AiError) -> Self {
        match e {
            ai::AiError::NotPermitted(m) => Error::NotPermitted(m),
            ai::AiError::InvalidRequest(m) => Error::InvalidRequest(m),
            ai::AiError::NotFound(m) => Error::NotFound(m),
            ai::AiError::LimitExceeded(m) => Error::LimitExceeded(m),
            ai::AiError::Overloaded(m) => Error::Overloaded(m),
            ai::AiError::Failed(m) => Error::Failed(m),
        }
    }
}

impl From<retrieval::RetrievalError> for Error {
    fn from(e: retrieval::RetrievalError) -> Self {
        match e {
            retrieval::RetrievalError::NotPermitted(kb) => {
                Error::NotPermitted(format!("knowledge base '{kb}' is not granted to this function (grants.knowledge_bases)"))
            }
            retrieval::RetrievalError::NotFound(kb) => Error::NotFound(format!("no knowledge base '{kb}'")),
            retrieval::RetrievalError::Invalid(m) => Error::InvalidRequest(m),
            retrieval::RetrievalError::Backend(m) => Error::Failed(m),
        }
    }
}

impl From<kv::KvError> for Error {
    fn from(e: kv::KvError) -> Self {
        match e {
            kv::KvError::NotPermitted => {
                Error::NotPermitted("the key-value store is not granted to this function (grants.kv)".into())
            }
            kv::KvError::TooLarge(m) => Error::TooLarge(m),
            kv::KvError::Failed(m) => Error::Failed(m),
        }
    }
}

impl From<files::FilesError> for Error {
    fn from(e: files::FilesError) -> Self {
        match e {
            files::FilesError::NotPermitted => {
                Error::NotPermitted("the tenant's files are not granted to this function (grants.files)".into())
            }
            files::FilesError::NotFound(id) => Error::NotFound(format!("no file '{id}'")),
            files::FilesError::Failed(m) => Error::Failed(m),
        }
    }
}
