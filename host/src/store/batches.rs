//! Batches (`/v1/batches`): the durable state of each batch job and the result of every
//! request line it has run.
//!
//! A result row is written as soon as its line has run, keyed by (batch, line), so a
//! restart resumes a batch at the lines that have none and no line is run into the output
//! twice. The output and error files are made from these rows when the batch ends, and
//! their records are inserted in the same transaction that ends it.

use serde::{Deserialize, Serialize};

use super::{FileRecord, StoreError};

/// Where a batch is, with OpenAI's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// The input file is being checked.
    Validating,
    /// The input file was refused (see `errors`).
    Failed,
    /// Lines are running.
    InProgress,
    /// Every line ran; the output files are being written.
    Finalizing,
    /// Done; the output files are there.
    Completed,
    /// The completion window passed first; unfinished lines are in the error file.
    Expired,
    /// Cancel asked for; lines already running finish.
    Cancelling,
    /// Cancelled; what ran before is in the output files.
    Cancelled,
}

impl BatchStatus {
    /// Every status.
    pub const ALL: [Self; 8] = [
        Self::Validating,
        Self::Failed,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    /// Name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the batch still has work (the worker picks it up, after a restart too).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Validating | Self::InProgress | Self::Finalizing | Self::Cancelling)
    }

    /// The column holding the time the batch reached this status (`created_at` for
    /// `validating`, where every batch starts).
    pub(super) fn time_column(self) -> &'static str {
        match self {
            Self::Validating => "created_at",
            Self::Failed => "failed_at",
            Self::InProgress => "in_progress_at",
            Self::Finalizing => "finalizing_at",
            Self::Completed => "completed_at",
            Self::Expired => "expired_at",
            Self::Cancelling => "cancelling_at",
            Self::Cancelled => "cancelled_at",
        }
    }
}

/// One problem of an input file (OpenAI's `errors.data[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLineError {
    /// A stable code (`invalid_json_line`, `mismatched_url`, `duplicate_custom_id`, ...).
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// The field at fault, where one is.
    pub param: Option<String>,
    /// 1-based line of the input file, where the problem is one line's.
    pub line: Option<u64>,
}

/// A batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// `batch_...`.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The key that created it: the lines run (and are metered) as this key.
    pub key_id: String,
    /// `/v1/chat/completions`, `/v1/completions` or `/v1/embeddings`.
    pub endpoint: String,
    /// The JSONL file of requests.
    pub input_file_id: String,
    /// `24h`.
    pub completion_window: String,
    /// Where it is.
    pub status: BatchStatus,
    /// User metadata (a JSON object of strings), if given.
    pub metadata: Option<serde_json::Value>,
    /// Why the input was refused.
    pub errors: Vec<BatchLineError>,
    /// Request lines in the input (known once validated).
    pub total: u64,
    /// Lines that ran to a 2xx answer (read from the results).
    pub completed: u64,
    /// Lines that ran to an error (read from the results).
    pub failed: u64,
    /// The output file (successful lines), once finished.
    pub output_file_id: Option<String>,
    /// The error file (failed lines), once finished.
    pub error_file_id: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// When the completion window ends.
    pub expires_at: i64,
    /// Times each status was reached.
    pub in_progress_at: Option<i64>,
    /// Ditto.
    pub finalizing_at: Option<i64>,
    /// Ditto.
    pub completed_at: Option<i64>,
    /// Ditto.
    pub failed_at: Option<i64>,
    /// Ditto.
    pub expired_at: Option<i64>,
    /// Ditto.
    pub cancelling_at: Option<i64>,
    /// Ditto.
    pub cancelled_at: Option<i64>,
}

/// The result of one request line, as its output line is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// 0-based index of the request among the input's request lines.
    pub line: u64,
    /// Whether it goes to the output file (a 2xx answer) or the error file.
    pub ok: bool,
    /// The JSONL line (without its newline).
    pub body: String,
}

/// A status change.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchTransition<'a> {
    /// Only from one of these.
    pub from: &'a [BatchStatus],
    /// To this; its time column is set to `at`.
    pub to: BatchStatus,
    /// Unix seconds.
    pub at: i64,
    /// Sets the request count (on leaving `validating`).
    pub total: Option<u64>,
    /// Sets the input's problems (on `failed`).
    pub errors: Option<&'a [BatchLineError]>,
}

/// How a batch ends: its final status and the output files made for it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchEnd {
    /// `completed`, `expired` or `cancelled`.
    pub status: BatchStatus,
    /// Unix seconds.
    pub at: i64,
    /// The output file's record, when a line succeeded.
    pub output: Option<FileRecord>,
    /// The error file's record, when a line failed.
    pub error: Option<FileRecord>,
}

/// Data access for batches.
pub trait BatchStore: Send + Sync {
    /// Adds a batch.
    fn insert_batch(&self, b: &BatchRecord) -> Result<(), StoreError>;
    /// A tenant's batch.
    fn get_batch(&self, tenant: &str, id: &str) -> Result<Option<BatchRecord>, StoreError>;
    /// A batch's status alone: what the worker checks before each line starts (the whole
    /// record counts the batch's results, which grows with every line).
    fn batch_status(&self, id: &str) -> Result<Option<BatchStatus>, StoreError>;
    /// Up to `limit` of a tenant's batches, newest first, after the batch `after`;
    /// `None` when that cursor is not one of its batches.
    fn list_batches(&self, tenant: &str, after: Option<&str>, limit: u32) -> Result<Option<Vec<BatchRecord>>, StoreError>;
    /// The oldest batch of any tenant that still has work ([`BatchStatus::is_open`]).
    fn next_open_batch(&self) -> Result<Option<BatchRecord>, StoreError>;
    /// Moves a batch from one of `t.from` to `t.to`; false (and nothing changed) when it
    /// was in another status.
    fn transition_batch(&self, id: &str, t: &BatchTransition<'_>) -> Result<bool, StoreError>;
    /// Stores a line's result; a second result for the same line is ignored.
    fn put_batch_result(&self, batch_id: &str, r: &BatchResult) -> Result<(), StoreError>;
    /// The lines that have a result.
    fn batch_lines_done(&self, batch_id: &str) -> Result<Vec<u64>, StoreError>;
    /// Every result, in line order.
    fn batch_results(&self, batch_id: &str) -> Result<Vec<BatchResult>, StoreError>;
    /// Inserts the output files' records and ends the batch (from `finalizing`,
    /// `in_progress` or `cancelling`), in one transaction; false when it had ended.
    fn end_batch(&self, id: &str, end: &BatchEnd) -> Result<bool, StoreError>;
}
