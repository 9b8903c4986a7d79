//! How a model call fails, in the categories `wasi:nn/errors` reports.

/// How a wasi:nn call failed; `code` maps to `wasi:nn/errors.error-code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NnError {
    /// Category.
    pub code: NnErrorCode,
    /// What happened, for the guest.
    pub message: String,
}

/// Error categories (the subset of wasi:nn's that the backend produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NnErrorCode {
    /// Bad tensor name, type, shape or data.
    InvalidArgument,
    /// The sequence would exceed the context length.
    TooLarge,
    /// ONNX Runtime failed.
    RuntimeError,
}

impl NnError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { code: NnErrorCode::InvalidArgument, message: message.into() }
    }

    pub(crate) fn runtime(e: impl std::fmt::Display) -> Self {
        Self { code: NnErrorCode::RuntimeError, message: format!("onnxruntime: {e}") }
    }

    /// A failure of the host's own bookkeeping around ONNX Runtime (a scheduler gone, a
    /// cache lost), worded as is.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self { code: NnErrorCode::RuntimeError, message: message.into() }
    }
}
