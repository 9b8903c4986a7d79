//! The JSON bodies of the inference endpoints, for the OpenAPI document only.
//!
//! The host hands these bodies to the handler components unparsed, so these types are
//! never (de)serialized by the server: they describe what the handlers' own parsers
//! accept and what their writers emit (`functions/handlers/chat-core/src/request.rs`,
//! `tools.rs` and `response.rs`, `functions/handlers/rag`, `functions/handlers/embeddings`)
//! and what `api/inference.rs` answers for `/v1/models`. Keep them in step with those.
//!
//! Conventions, from the parsers:
//! - an explicit `null` is the same as an absent optional field, so optional request
//!   fields are nullable; a field whose `null` is refused is not;
//! - unknown fields are ignored, so request objects allow extra properties; a field
//!   listed here is one the parser type-checks (an ignored field listed with a type
//!   would make a wrong-typed value look invalid when the server accepts it);
//! - answers list as required only what is always written, and as nullable what may be
//!   written as `null`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};

/// A field that may only be absent or `null`: the parser refuses any other value.
fn null_only(description: &str) -> Object {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Null)).description(Some(description)).build()
}

/// `tool_calls` of a message that is not the assistant's.
fn no_tool_calls() -> Object {
    null_only("Only `null`: only assistant messages may carry tool calls.")
}

/// `knowledge_bases` of a legacy completion.
fn no_knowledge_bases() -> Object {
    null_only("Only `null`: grounding in knowledge bases is for chat completions (the RAG handler refuses this endpoint).")
}

/// `logit_bias`: token id (as a string) to a bias in [-100, 100]. The key is trimmed
/// and parsed as a `u32` (Rust's parser takes a leading `+`); whether the id is in the
/// model's vocabulary is only known per model.
fn logit_bias_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(
            "Token id (a non-negative integer, as a string) to a bias in [-100, 100] added to its logit; -100 \
             bans the token, 100 all but forces it. Ids must be below the model's vocabulary size.",
        ))
        .property_names(Some(ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^\s*\+?[0-9]+\s*$"))))
        .additional_properties(Some(AdditionalProperties::<Schema>::RefOr(RefOr::T(Schema::Object(
            ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-100)).maximum(Some(100)).build(),
        )))))
        .examples([json!({"1": -100})])
        .build()
}

/// `echo`: only `false`, since echoing the prompt is not supported.
fn echo_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
        .enum_values(Some([json!(false), Value::Null]))
        .description(Some("Only `false`: echoing the prompt is not supported."))
        .build()
}

/// Most inputs of one embeddings request.
const MAX_INPUTS: usize = 2048;

fn string(min_length: Option<usize>) -> Schema {
    Schema::Object(ObjectBuilder::new().schema_type(Type::String).min_length(min_length).build())
}

fn array(items: Schema, min_items: Option<usize>, max_items: Option<usize>) -> Schema {
    Schema::Array(ArrayBuilder::new().items(RefOr::T(items)).min_items(min_items).max_items(max_items).build())
}

/// The schema of an untagged enum whose variants' JSON types never overlap.
fn one_of(description: &str, variants: impl IntoIterator<Item = Schema>) -> RefOr<Schema> {
    let mut builder = OneOfBuilder::new().description(Some(description));
    for v in variants {
        builder = builder.item(v);
    }
    RefOr::T(Schema::OneOf(builder.build()))
}

/// `knowledge_bases`: 1 to 10 non-empty ids, or `null` (no grounding).
fn knowledge_bases_schema() -> Schema {
    Schema::Array(
        ArrayBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
            .items(RefOr::T(string(Some(1))))
            .min_items(Some(1))
            .max_items(Some(10))
            .description(Some(
                "Knowledge bases to ground the answer in (Tensoras extension): the last user message is searched \
                 for in them and the best chunks that fit the context are put in front of it, and the answer lists \
                 them in `citations`. Each must exist for the caller's tenant; repeats are searched once.",
            ))
            .build(),
    )
}

// ---- chat completions: request ------------------------------------------------------

// The fields of `ChatCompletionRequest`, whose schema completes this one with what a
// field cannot say alone.
/// `POST /v1/chat/completions`. With `knowledge_bases` (not `null`) the request is
/// answered by the RAG handler: it searches them for the last user message and adds
/// `citations` to the answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionFields {
    /// Id or alias of an installed chat model (see `GET /v1/models`), or `fn:NAME` for a
    /// deployed chat function.
    #[schema(min_length = 1, example = "smollm2-135m-instruct")]
    pub model: String,
    /// The conversation so far.
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature; 0 is greedy. Default: the model's.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Nucleus sampling: the smallest set of tokens whose probabilities add up to
    /// `top_p`. Default: the model's.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// How many choices to generate.
    #[schema(minimum = 1, maximum = 8, default = 1)]
    pub n: Option<i64>,
    /// Most tokens to generate per choice (deprecated name of `max_completion_tokens`,
    /// which wins when both are set). Prompt plus completion must fit the model's
    /// context. Default: what fits, up to the model's default.
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    pub max_tokens: Option<i64>,
    /// Most tokens to generate per choice.
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    pub max_completion_tokens: Option<i64>,
    /// Up to 4 sequences where generation stops (not included in the text); empty ones
    /// are ignored.
    pub stop: Option<StopSequences>,
    /// Makes sampling reproducible: the same seed and request give the same choices.
    #[schema(minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    /// Penalty for tokens already present in the text.
    #[schema(minimum = -2, maximum = 2, default = 0)]
    pub presence_penalty: Option<f64>,
    /// Penalty proportional to how often a token already occurs.
    #[schema(minimum = -2, maximum = 2, default = 0)]
    pub frequency_penalty: Option<f64>,
    #[schema(schema_with = logit_bias_schema)]
    pub logit_bias: Option<Value>,
    /// Return the log probability of each generated token.
    #[schema(default = false)]
    pub logprobs: Option<bool>,
    /// Alternatives listed per token; requires `logprobs: true`.
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
    /// Answer with server-sent events of `ChatCompletionChunk`s, ended by `data: [DONE]`.
    #[schema(default = false)]
    pub stream: Option<bool>,
    /// Only allowed when `stream` is true.
    pub stream_options: Option<StreamOptions>,
    /// Functions the model may call: the client's own (`function`) or functions
    /// deployed on this server that it runs itself (`tensoras_function`). Names must be
    /// unique.
    #[schema(max_items = 128)]
    pub tools: Option<Vec<ChatTool>>,
    /// Whether and which tool the model must call; only allowed with `tools`. Default:
    /// `auto` with tools.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn; only allowed with `tools`.
    #[schema(default = true)]
    pub parallel_tool_calls: Option<bool>,
    /// Constrain the answer to JSON, or to a JSON schema.
    pub response_format: Option<ResponseFormat>,
    #[schema(schema_with = knowledge_bases_schema)]
    pub knowledge_bases: Option<Vec<String>>,
    /// How to search `knowledge_bases`; read (and checked) only with them.
    pub retrieval_options: Option<RetrievalOptions>,
    /// End-user id; accepted and ignored.
    #[schema(value_type = Option<Value>)]
    pub user: Option<Value>,
}

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatCompletionRequest(pub ChatCompletionFields);

impl utoipa::PartialSchema for ChatCompletionRequest {
    /// The fields' schema, but `retrieval_options` is only checked when `knowledge_bases`
    /// is an array: without it the request goes to the chat handler, which ignores the
    /// field whatever it holds, so a plain property would call requests invalid that the
    /// server accepts.
    fn schema() -> RefOr<Schema> {
        let mut schema = ChatCompletionFields::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema
            && let Some(checked) = object.properties.get_mut("retrieval_options")
        {
            let description = "How to search `knowledge_bases`; read (and checked) only with them.";
            let any = RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(SchemaType::AnyValue).description(Some(description)).build(),
            ));
            let checked = std::mem::replace(checked, any);
            let grounded = json!({"required": ["knowledge_bases"], "properties": {"knowledge_bases": {"type": "array"}}});
            let then = json!({"properties": {"retrieval_options": checked}});
            // Not `x-` extensions: `if`/`then` are JSON Schema keywords, which utoipa has no
            // builder for; an extension map serializes its keys as they are.
            object
                .extensions
                .get_or_insert_with(Default::default)
                .extend([("if".to_owned(), grounded), ("then".to_owned(), then)]);
        }
        schema
    }
}

impl ToSchema for ChatCompletionRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        ChatCompletionFields::schemas(schemas);
    }
}

/// One message of the conversation, told apart by `role`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// Instructions for the model.
    System(InstructionMessage),
    /// Instructions for the model (treated as `system`).
    Developer(InstructionMessage),
    /// What the user says.
    User(InstructionMessage),
    /// An earlier answer of the model.
    Assistant(AssistantMessageParam),
    /// The result of a tool call.
    Tool(ToolMessage),
}

/// A `system`, `developer` or `user` message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstructionMessage {
    pub content: MessageContent,
    /// Ignored for this role, but must be a string when set.
    pub tool_call_id: Option<String>,
    #[schema(schema_with = no_tool_calls)]
    pub tool_calls: Option<Value>,
}

/// An `assistant` message: text, tool calls, or both.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssistantMessageParam {
    /// May be absent or `null` when the message only called tools.
    pub content: Option<MessageContent>,
    /// Ignored for this role, but must be a string when set.
    pub tool_call_id: Option<String>,
    /// The calls the model made, as the answer listed them:
    /// `{"id", "type": "function", "function": {"name", "arguments"}}`. Passed to the
    /// prompt as given, unchecked (an empty array is the same as none).
    #[schema(value_type = Option<Vec<Value>>)]
    pub tool_calls: Option<Vec<Value>>,
}

/// A `tool` message: the output of the call `tool_call_id`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolMessage {
    pub content: MessageContent,
    /// The `id` of the tool call this answers.
    pub tool_call_id: String,
    #[schema(schema_with = no_tool_calls)]
    pub tool_calls: Option<Value>,
}

/// A message's text: a string, or text parts that are concatenated.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<TextContentPart>),
}

/// A content part; only text is supported.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TextContentPart {
    #[serde(rename = "type")]
    pub kind: TextPartType,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPartType {
    Text,
}

/// One stop sequence, or up to 4.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl utoipa::PartialSchema for StopSequences {
    fn schema() -> RefOr<Schema> {
        one_of("One stop sequence, or up to 4.", [string(None), array(string(None), None, Some(4))])
    }
}

impl ToSchema for StopSequences {}

/// Options of a streamed answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices (every other chunk then has
    /// `usage: null`).
    #[schema(default = false)]
    pub include_usage: Option<bool>,
}

/// A tool the model may call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatTool {
    /// A function the client runs: calls come back in the answer.
    Function { function: FunctionDefinition },
    /// A tool function deployed on this server (Tensoras extension): the server runs its
    /// calls and generation goes on with their output; the answer lists them in
    /// `server_tool_calls`. Its description and parameters are the deployed ones.
    TensorasFunction { tensoras_function: ServerFunctionRef },
}

/// A client function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
    pub name: String,
    /// What the function does, for the model.
    pub description: Option<String>,
    /// JSON Schema of the arguments object; absent means no parameters. It must be one
    /// the server can enforce by constrained decoding.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Refuse schema features that cannot be enforced instead of ignoring them.
    #[schema(default = false)]
    pub strict: Option<bool>,
}

/// A deployed tool function, by name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerFunctionRef {
    /// Name of a tool function deployed for the caller's tenant.
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
    pub name: String,
}

/// `none`, `auto`, `required`, or a named function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

/// `none`: no calls; `auto`: the model decides; `required`: at least one call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

/// Call this function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub kind: ToolCallType,
    pub function: NamedFunction,
}

/// The function to call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamedFunction {
    /// One of the `tools`' names.
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallType {
    Function,
}

/// The answer's format.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against a schema.
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// The schema of a `json_schema` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
    pub name: String,
    /// The JSON Schema; absent means any JSON object. It must be one the server can
    /// enforce by constrained decoding.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<Value>,
    /// Refuse schema features that cannot be enforced instead of ignoring them.
    #[schema(default = false)]
    pub strict: Option<bool>,
}

/// How to search the knowledge bases.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetrievalOptions {
    /// Most chunks put in the prompt, over all knowledge bases (fewer when they do not
    /// fit the model's context).
    #[schema(minimum = 1, maximum = 20, default = 4)]
    pub top_k: Option<i64>,
    #[schema(default = "hybrid")]
    pub search_type: Option<RetrievalSearchType>,
    /// Metadata filter, in the language of `POST /v1/knowledge-bases/{id}/retrieve`.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// Lowest score a chunk may have.
    pub min_score: Option<f64>,
}

/// `vector` (embeddings), `keyword` (BM25) or `hybrid` (both, fused).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalSearchType {
    Vector,
    Keyword,
    Hybrid,
}

// ---- chat completions: answers ------------------------------------------------------

/// A chat completion (`stream` false).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    pub object: ChatCompletionObject,
    /// Unix seconds.
    pub created: u64,
    /// Canonical id of the model that answered.
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChatCompletionChoice>,
    pub usage: CompletionUsage,
    /// RAG answers only: the knowledge base chunks the prompt held, numbered as the model
    /// saw them (`[1]`, `[2]`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub citations: Option<Vec<Citation>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum ChatCompletionObject {
    #[serde(rename = "chat.completion")]
    ChatCompletion,
}

/// One choice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChoice {
    pub index: u32,
    pub message: ChatCompletionMessage,
    /// `null` unless `logprobs` was requested.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: FinishReason,
    /// The deployed tools the server ran for this choice, in order (Tensoras extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub server_tool_calls: Option<Vec<ServerToolCall>>,
}

/// Why a choice ended: a stop token or sequence, the token limit, or tool calls.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

/// The model's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionMessage {
    pub role: AssistantRole,
    /// `null` when the model only called tools.
    #[schema(required = true)]
    pub content: Option<String>,
    /// Always `null`: refusals are not told apart.
    #[schema(required = true)]
    pub refusal: Option<String>,
    /// Calls of the client's tools, for the client to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tool_calls: Option<Vec<ChatToolCall>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssistantRole {
    Assistant,
}

/// A call of a client function.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatToolCall {
    /// `call_...`.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ToolCallType,
    pub function: ChatFunctionCall,
}

/// The function called.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatFunctionCall {
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
}

/// A deployed tool function the server ran (Tensoras extension).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerToolCall {
    /// `call_...`.
    pub id: String,
    pub name: String,
    /// The arguments, as JSON text.
    pub arguments: String,
    /// The tool's output, or its error message: what the model saw.
    pub output: String,
    /// Whether the call failed.
    pub is_error: bool,
}

/// Log probabilities of the generated tokens.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
}

/// One generated token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatTokenLogprob {
    pub token: String,
    /// Log probability (-9999 for an impossible token).
    pub logprob: f32,
    /// UTF-8 bytes of `token`.
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position, most likely first (`top_logprobs` of them).
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// An alternative token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    /// UTF-8 bytes of `token`.
    pub bytes: Vec<u8>,
}

/// Token counts of a request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionUsage {
    /// Prompt tokens (counted once whatever `n`, plus the prompts of later rounds after
    /// server-run tool calls).
    pub prompt_tokens: u32,
    /// Tokens generated over all choices.
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

/// A knowledge base chunk a RAG answer's prompt held.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    /// Its number in the prompt, from 1.
    #[schema(minimum = 1)]
    pub index: u32,
    /// File name.
    pub source: String,
    pub file_id: String,
    pub knowledge_base_id: String,
    /// Position of the chunk in its file.
    pub chunk_index: u32,
    pub text: String,
    /// Retrieval score.
    pub score: f32,
}

/// One server-sent event of a streamed chat completion. Each choice starts with a chunk
/// whose delta is `{"role": "assistant", "content": ""}` and ends with an empty delta and
/// its `finish_reason`; with `stream_options.include_usage`, a last chunk has no choices
/// and the usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// The same for every chunk of a stream.
    pub id: String,
    pub object: ChatCompletionChunkObject,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Present only with `stream_options.include_usage`: `null` but in the last chunk.
    pub usage: Option<CompletionUsage>,
    /// RAG streams only, on the first chunk: see `ChatCompletion.citations`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub citations: Option<Vec<Citation>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum ChatCompletionChunkObject {
    #[serde(rename = "chat.completion.chunk")]
    ChatCompletionChunk,
}

/// What a chunk adds to one choice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatChunkChoice {
    pub index: u32,
    pub delta: ChatDelta,
    /// `null` unless `logprobs` was requested and the chunk carries text.
    #[schema(required = true)]
    pub logprobs: Option<ChatLogprobs>,
    /// `null` until the choice's last chunk.
    #[schema(required = true)]
    pub finish_reason: Option<FinishReason>,
}

/// The new part of the message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatDelta {
    /// In the first chunk of a choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub role: Option<AssistantRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub content: Option<String>,
    /// A call starting (`id`, `type`, `function.name`, empty `arguments`) or more of its
    /// arguments (`index` and `function.arguments` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tool_calls: Option<Vec<ChatToolCallDelta>>,
    /// A deployed tool the server just ran (Tensoras extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub server_tool_calls: Option<Vec<ServerToolCall>>,
}

/// Part of a tool call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatToolCallDelta {
    /// Position of the call in the message's `tool_calls`.
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kind: Option<ToolCallType>,
    pub function: ChatFunctionCallDelta,
}

/// Part of a function call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChatFunctionCallDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

// ---- legacy completions -------------------------------------------------------------

/// `POST /v1/completions` (legacy): one prompt, continued as is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// Id or alias of an installed chat model (see `GET /v1/models`), or `fn:NAME` for a
    /// deployed chat function.
    #[schema(min_length = 1, example = "smollm2-135m-instruct")]
    pub model: String,
    pub prompt: Prompt,
    /// Only `""` (insertion is not supported).
    #[schema(max_length = 0)]
    pub suffix: Option<String>,
    #[schema(schema_with = echo_schema)]
    pub echo: Option<bool>,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    pub best_of: Option<i64>,
    /// Sampling temperature; 0 is greedy. Default: the model's.
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Nucleus sampling. Default: the model's.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    /// How many choices to generate.
    #[schema(minimum = 1, maximum = 8, default = 1)]
    pub n: Option<i64>,
    /// Most tokens to generate per choice (`max_completion_tokens` wins when both are
    /// set). Prompt plus completion must fit the model's context.
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    pub max_tokens: Option<i64>,
    /// Most tokens to generate per choice.
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    pub max_completion_tokens: Option<i64>,
    /// Up to 4 sequences where generation stops; empty ones are ignored.
    pub stop: Option<StopSequences>,
    #[schema(minimum = -9223372036854775808i64, maximum = 9223372036854775807i64)]
    pub seed: Option<i64>,
    #[schema(minimum = -2, maximum = 2, default = 0)]
    pub presence_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2, default = 0)]
    pub frequency_penalty: Option<f64>,
    #[schema(schema_with = logit_bias_schema)]
    pub logit_bias: Option<Value>,
    /// Return log probabilities, with this many alternatives per token.
    #[schema(minimum = 0, maximum = 5)]
    pub logprobs: Option<i64>,
    /// Answer with server-sent events of `CompletionChunk`s, ended by `data: [DONE]`.
    #[schema(default = false)]
    pub stream: Option<bool>,
    /// Only allowed when `stream` is true.
    pub stream_options: Option<StreamOptions>,
    #[schema(schema_with = no_knowledge_bases)]
    pub knowledge_bases: Option<Value>,
    /// End-user id; accepted and ignored.
    #[schema(value_type = Option<Value>)]
    pub user: Option<Value>,
}

/// The prompt: a string, or an array of exactly one string.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    One(Vec<String>),
}

impl utoipa::PartialSchema for Prompt {
    fn schema() -> RefOr<Schema> {
        one_of(
            "The prompt: a string, or an array of exactly one string (one prompt per request; \
             token arrays are not supported).",
            [string(None), array(string(None), Some(1), Some(1))],
        )
    }
}

impl ToSchema for Prompt {}

/// A text completion (`stream` false).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Completion {
    /// `cmpl-...`.
    pub id: String,
    pub object: TextCompletionObject,
    /// Unix seconds.
    pub created: u64,
    /// Canonical id of the model that answered.
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: CompletionUsage,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum TextCompletionObject {
    #[serde(rename = "text_completion")]
    TextCompletion,
}

/// One choice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    /// `null` unless `logprobs` was requested.
    #[schema(required = true)]
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: CompletionFinishReason,
}

/// Why a choice ended: a stop token or sequence, or the token limit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompletionFinishReason {
    Stop,
    Length,
}

/// Legacy log probabilities, one entry per generated token in each array.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    /// Per token: the most likely tokens (most likely first) and the sampled one, token
    /// text to log probability.
    pub top_logprobs: Vec<std::collections::BTreeMap<String, f32>>,
    /// Characters of completion text before each token.
    pub text_offset: Vec<u64>,
}

/// One server-sent event of a streamed text completion: text as it is generated, then an
/// empty `text` with the `finish_reason`; with `stream_options.include_usage`, a last
/// chunk has no choices and the usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionChunk {
    pub id: String,
    pub object: TextCompletionObject,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<CompletionChunkChoice>,
    /// Present only with `stream_options.include_usage`: `null` but in the last chunk.
    pub usage: Option<CompletionUsage>,
}

/// What a chunk adds to one choice.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompletionChunkChoice {
    pub text: String,
    pub index: u32,
    /// `null` unless `logprobs` was requested and the chunk carries text.
    #[schema(required = true)]
    pub logprobs: Option<CompletionLogprobs>,
    /// `null` until the choice's last chunk.
    #[schema(required = true)]
    pub finish_reason: Option<CompletionFinishReason>,
}

// ---- embeddings ----------------------------------------------------------------------

/// `POST /v1/embeddings`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Id or alias of an installed embedding model (see `GET /v1/models`).
    #[schema(min_length = 1, example = "all-minilm-l6-v2")]
    pub model: String,
    pub input: EmbeddingInput,
    #[schema(default = "float")]
    pub encoding_format: Option<EncodingFormat>,
    /// Must be the model's own width when given (no shortening).
    #[schema(minimum = 1, maximum = 9223372036854775807i64)]
    pub dimensions: Option<i64>,
    /// End-user id; accepted and ignored.
    #[schema(value_type = Option<Value>)]
    pub user: Option<Value>,
}

/// What to embed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenArrays(Vec<Vec<u32>>),
}

impl utoipa::PartialSchema for EmbeddingInput {
    fn schema() -> RefOr<Schema> {
        // Token ids are u32s; whether they are in the vocabulary is checked per model.
        let token =
            || Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(u32::MAX)).build());
        one_of(
            "What to embed: a non-empty string, up to 2048 of them, one array of token ids, or up to 2048 \
             non-empty arrays of token ids. Inputs longer than the model's context are truncated.",
            [
                string(Some(1)),
                array(string(Some(1)), Some(1), Some(MAX_INPUTS)),
                array(token(), Some(1), Some(MAX_INPUTS)),
                array(array(token(), Some(1), None), Some(1), Some(MAX_INPUTS)),
            ],
        )
    }
}

impl ToSchema for EmbeddingInput {}

/// `float`: arrays of numbers; `base64`: base64 of the little-endian `f32` bytes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

/// The embeddings, in input order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingList {
    pub object: ListObject,
    pub data: Vec<Embedding>,
    /// Canonical id of the model.
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListObject {
    List,
}

/// One input's embedding (mean-pooled and L2-normalised).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    pub object: EmbeddingObject,
    /// Position of the input.
    pub index: u32,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingObject {
    Embedding,
}

/// The vector, as `encoding_format` asked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    #[schema(format = Byte)]
    Base64(String),
}

/// Token counts of an embeddings request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens embedded (after truncation).
    pub prompt_tokens: u32,
    /// The same as `prompt_tokens`.
    pub total_tokens: u32,
}

// ---- models ---------------------------------------------------------------------------

/// A model this server can serve: an installed model, or a deployed chat function
/// (`fn:NAME`, `kind: "function"`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// Canonical id (aliases answer too), or `fn:NAME`.
    pub id: String,
    pub object: ModelObject,
    /// Unix seconds: when the model's files were written (0 if unknown), or when the
    /// function was deployed.
    pub created: i64,
    /// The organisation behind the model, or the function's tenant.
    pub owned_by: String,
    pub kind: ModelKind,
    /// Context length in tokens (0 if unknown). Installed models only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub context_length: Option<u32>,
    /// Other names the model answers to. Installed models only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub aliases: Option<Vec<String>>,
    /// Installed models only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pricing: Option<ModelPricing>,
    /// Chat functions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelObject {
    Model,
}

/// `chat` (chat and text completions), `embedding`, or `function` (a chat function).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
    Function,
}

/// What usage costs, in USD per million tokens.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelPricing {
    /// Prompt tokens.
    pub input_per_million: f64,
    /// Completion tokens.
    pub output_per_million: f64,
}

/// `GET /v1/models`: the installed models and the caller's tenant's chat functions, by id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub object: ListObject,
    pub data: Vec<Model>,
}

/// One server-sent event of a stream, as schemathesis and OpenAPI 3.2 read
/// `text/event-stream`: its `data` is a chunk (`T`) as JSON, an error object as JSON when
/// the stream fails part way, or the closing `[DONE]`.
fn events_schema<T: ToSchema>() -> RefOr<Schema> {
    let payload = json!({"anyOf": [
        {"$ref": format!("#/components/schemas/{}", T::name())},
        {"$ref": "#/components/schemas/ErrorResponse"},
    ]});
    let data = json!([
        {"const": "[DONE]"},
        {"type": "string", "contentMediaType": "application/json", "contentSchema": payload},
    ]);
    // `anyOf` of raw JSON Schema: utoipa has no builder for `const` or `contentSchema`,
    // and an extension map serializes its keys as they are.
    let mut data_schema = ObjectBuilder::new().schema_type(SchemaType::AnyValue).build();
    data_schema.extensions.get_or_insert_with(Default::default).extend([("anyOf".to_owned(), data)]);
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(utoipa::openapi::schema::Type::Object))
            .property("data", data_schema)
            .required("data")
            .description(Some("One event: `data` is a chunk as JSON, an error object, or `[DONE]`."))
            .build(),
    ))
}

macro_rules! event_stream {
    ($name:ident, $chunk:ty, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                events_schema::<$chunk>()
            }
        }

        impl ToSchema for $name {
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                schemas.push((<$chunk as ToSchema>::name().into_owned(), <$chunk as utoipa::PartialSchema>::schema()));
                <$chunk as ToSchema>::schemas(schemas);
            }
        }
    };
}

event_stream!(ChatCompletionEvents, ChatCompletionChunk, "The events of a streamed chat completion.");
event_stream!(CompletionEvents, CompletionChunk, "The events of a streamed text completion.");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema_of<T: utoipa::PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn chat_request_encodes_the_parser_limits() {
        let s = schema_of::<ChatCompletionRequest>();
        let p = &s["properties"];
        assert_eq!(s["required"], json!(["model", "messages"]));
        assert_eq!(p["temperature"]["maximum"], json!(2));
        assert_eq!(p["temperature"]["type"], json!(["number", "null"]));
        assert_eq!(p["top_p"]["exclusiveMinimum"], json!(0));
        assert_eq!(p["messages"]["minItems"], json!(1));
        assert_eq!(p["model"]["minLength"], json!(1));
        assert_eq!(p["n"]["maximum"], json!(8));
        assert_eq!(p["seed"]["minimum"], json!(i64::MIN));
        assert_eq!(p["logit_bias"]["additionalProperties"]["maximum"], json!(100));
        assert!(s.get("additionalProperties").is_none(), "unknown fields are ignored, so allowed");
        // retrieval_options is checked only with knowledge_bases.
        assert!(p["retrieval_options"].get("oneOf").is_none());
        assert_eq!(s["if"]["required"], json!(["knowledge_bases"]));
        assert!(s["then"]["properties"]["retrieval_options"].to_string().contains("RetrievalOptions"));
    }

    #[test]
    fn messages_are_told_apart_by_role() {
        let s = schema_of::<ChatMessage>();
        let variants = s["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), 5);
        let text = s.to_string();
        for role in ["system", "developer", "user", "assistant", "tool"] {
            assert!(text.contains(&format!("\"{role}\"")), "{role}: {text}");
        }
        let tool = schema_of::<ToolMessage>();
        assert_eq!(tool["required"], json!(["content", "tool_call_id"]));
        assert_eq!(tool["properties"]["tool_calls"]["type"], json!("null"));
        assert!(schema_of::<AssistantMessageParam>().get("required").is_none());
    }

    #[test]
    fn answers_mark_what_may_be_null() {
        let choice = schema_of::<ChatCompletionChoice>();
        assert_eq!(choice["required"], json!(["index", "message", "logprobs", "finish_reason"]));
        let delta = schema_of::<ChatDelta>();
        assert_eq!(delta["properties"]["content"]["type"], json!("string"));
        assert!(delta.get("required").is_none());
        let chunk = schema_of::<ChatCompletionChunk>();
        assert!(!chunk["required"].as_array().unwrap().contains(&json!("usage")));
        assert!(chunk.to_string().contains("null"), "usage may be null");
    }

    #[test]
    fn completions_refuse_what_is_not_supported() {
        let s = schema_of::<CompletionRequest>();
        let p = &s["properties"];
        assert_eq!(p["knowledge_bases"]["type"], json!("null"));
        assert_eq!(p["logprobs"]["maximum"], json!(5));
        assert_eq!(p["best_of"]["minimum"], json!(1));
        assert_eq!(p["best_of"]["maximum"], json!(1));
        assert_eq!(p["suffix"]["maxLength"], json!(0));
    }
}
