//! The bodies of the function endpoints: the deploy form as `super::deploy` reads it part
//! by part (documentation only), and the answers, which are serialized from these types.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::limits::{Grants, LimitsSpec};
use crate::store::{FunctionKind, FunctionRecord};

// ---- The request bodies (documentation only where a handler reads them by hand) ----

/// The multipart form of a deploy. `manifest` holds the whole manifest as JSON; `name`,
/// `kind`, `description` and `parameters` may come as parts of their own instead, and
/// win over the manifest's. Any other part is refused.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Read part by part from the stream (deploy); here for the document.
pub struct DeployForm {
    /// The WebAssembly component.
    #[schema(value_type = String, format = Binary, content_media_type = "application/wasm")]
    pub file: Vec<u8>,
    /// The manifest, as JSON.
    #[schema(nullable = false)]
    pub manifest: Option<DeployManifest>,
    /// Overrides the manifest's `name`.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: Option<String>,
    /// Overrides the manifest's `kind`.
    #[schema(nullable = false, pattern = "^(tool|http|chat)$")]
    pub kind: Option<String>,
    /// Overrides the manifest's `description`.
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// Overrides the manifest's `parameters` (JSON).
    #[schema(value_type = Object, required = false)]
    pub parameters: Option<Value>,
}

/// A deploy manifest, sent as JSON in the deploy form's `manifest` part.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documents `crate::functions::Manifest`, which the deploy form's `manifest` part is parsed into.
pub struct DeployManifest {
    /// Unique per tenant: 1-64 of A-Z, a-z, 0-9, `_`, `-`. Required here or as a form part.
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: Option<String>,
    /// `tool`, `http` or `chat`. Required here or as a form part.
    #[schema(nullable = false, pattern = "^(tool|http|chat)$")]
    pub kind: Option<String>,
    /// For tools: shown to the model; the component's own description by default.
    pub description: Option<String>,
    /// For tools only: the JSON Schema of the arguments (`"type": "object"`); the
    /// component's own by default.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Resource limits; the server's defaults where left out, within its maximums.
    #[schema(nullable = false)]
    pub limits: Option<LimitsSpec>,
    /// Capabilities beyond the deny-by-default sandbox.
    #[schema(nullable = false)]
    pub grants: Option<Grants>,
    /// For chat functions: the built-in handler it stands in for, for its tenant's own
    /// requests (`rag`: the tenant's chat completions that name `knowledge_bases`).
    #[schema(pattern = "^rag$")]
    pub replaces: Option<String>,
}

// ---- The answers ----

/// What every function object shows, whatever its kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionDetails {
    /// Unique per tenant; part of its URL.
    pub name: String,
    /// Which deploy of the name this is: 1, 2, ...
    pub version: u32,
    /// `tool`, `http` or `chat`.
    #[schema(value_type = String, pattern = "^(tool|http|chat)$")]
    pub kind: &'static str,
    /// Shown to models for tools.
    pub description: String,
    /// Resource limits as the manifest states them.
    pub limits: LimitsSpec,
    /// Capabilities granted beyond the sandbox.
    pub grants: Grants,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Component size in bytes.
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Tools only: the JSON Schema of the arguments (`null` if none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, required = false)]
    pub parameters: Option<Value>,
    /// HTTP functions only: where to send requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub url: Option<String>,
    /// Chat functions only: the model name to use it by, `fn:NAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model: Option<String>,
    /// Chat functions only: the built-in handler it stands in for, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub replaces: Option<String>,
}

impl From<&FunctionRecord> for FunctionDetails {
    fn from(f: &FunctionRecord) -> Self {
        let (mut parameters, mut url, mut model, mut replaces) = (None, None, None, None);
        match f.kind {
            FunctionKind::Tool => parameters = Some(f.parameters.clone().unwrap_or(Value::Null)),
            FunctionKind::Http => url = Some(format!("/v1/functions/{}/invoke", f.name)),
            FunctionKind::Chat => {
                model = Some(format!("fn:{}", f.name));
                replaces = f.replaces.clone();
            }
        }
        Self {
            name: f.name.clone(),
            version: f.version,
            kind: f.kind.as_str(),
            description: f.description.clone(),
            limits: f.limits.clone(),
            grants: f.grants.clone(),
            sha256: f.sha256.clone(),
            size_bytes: f.size_bytes,
            created_at: f.created_at,
            parameters,
            url,
            model,
            replaces,
        }
    }
}

/// A deployed function (the version that serves).
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionObject {
    /// The function's name.
    pub id: String,
    #[schema(value_type = String, pattern = "^function$")]
    pub object: &'static str,
    #[serde(flatten)]
    pub details: FunctionDetails,
}

impl From<&FunctionRecord> for FunctionObject {
    fn from(f: &FunctionRecord) -> Self {
        Self { id: f.name.clone(), object: "function", details: f.into() }
    }
}

/// One kept version of a function.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionVersion {
    /// The function's name.
    pub id: String,
    #[schema(value_type = String, pattern = "^function\\.version$")]
    pub object: &'static str,
    #[serde(flatten)]
    pub details: FunctionDetails,
    /// Whether this version serves.
    pub active: bool,
}

/// The caller's tenant's functions.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<FunctionObject>,
}

/// A function's kept versions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionVersionList {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<FunctionVersion>,
}

/// What deleting a function answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionDeleted {
    pub id: String,
    #[schema(value_type = String, pattern = "^function$")]
    pub object: &'static str,
    pub deleted: bool,
}

/// One recorded invocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionInvocation {
    /// Increasing; pass the last one seen as `after` to follow.
    pub id: u64,
    #[schema(value_type = String, pattern = "^function\\.invocation$")]
    pub object: &'static str,
    /// When it started, in Unix milliseconds.
    pub started_at_ms: i64,
    pub duration_ms: f64,
    /// `ok` or `error`.
    #[schema(value_type = String, pattern = "^(ok|error)$")]
    pub status: &'static str,
    /// Why it failed (a trap, a limit, or the guest's own error); `null` if it did not.
    pub error: Option<String>,
    /// What it wrote to stdout and stderr (lossy UTF-8), with a note of what was dropped.
    pub output: String,
}

/// A function's counts since it was loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionLogStats {
    pub invocations: u64,
    pub errors: u64,
    pub mean_duration_ms: f64,
}

/// A function's recent invocations, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionLogs {
    #[schema(value_type = String, pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<FunctionInvocation>,
    pub stats: FunctionLogStats,
}

/// What a tool call answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolResult {
    #[schema(value_type = String, pattern = "^function\\.result$")]
    pub object: &'static str,
    /// The tool's name.
    pub name: String,
    /// The tool's output text.
    pub output: String,
    pub duration_ms: f64,
}
