//! API handler components (`functions/chat`, `functions/rag`, `functions/embeddings`):
//! the host side of the `chat-handler` / `rag-handler` / `embeddings-handler` worlds —
//! wasi:nn on our ONNX Runtime backend, tokenizers, the model catalogue, the stream
//! output sink, tool calls ([`tools`]) and knowledge-base retrieval ([`retrieval`]). The bindings
//! are those of `rag-handler`, which includes the others' imports, so one linker serves
//! all three.

mod retrieval;
mod tools;

use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf, Resource};

use super::{InvokeError, Limits, Runtime, Sandbox, State};
use crate::inference::batch::Sequence;
use crate::inference::onnx::{EncoderGraph, NnError, NnErrorCode};
use crate::inference::{Graph, Inference};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tensoras:platform/rag-handler",
        imports: {
            "tensoras:platform/retrieval.retrieve": async | trappable,
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            "tensoras:platform/output.send": async | trappable,
            "tensoras:platform/tools.invoke": async | trappable,
            "tensoras:platform/tokenizer.encode": async | trappable,
            "tensoras:platform/tokenizer.encode-text": async | trappable,
            "tensoras:platform/tokenizer.encode-chat": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:nn/graph.graph": super::NnGraph,
            "wasi:nn/inference.graph-execution-context": super::NnContext,
            "wasi:nn/tensor.tensor": super::NnTensor,
            "wasi:nn/errors.error": super::NnErrorResource,
        },
    });
}

pub use bindings::exports::tensoras::platform::handler::{Request as HandlerRequest, Response as HandlerResponse};
pub use bindings::tensoras::platform::retrieval::{Chunk as RetrievedChunk, RetrievalError, Search as RetrievalSearch};
pub use bindings::tensoras::platform::types::{HandlerError, Usage};
use bindings::tensoras::platform::{models, output, tokenizer};
use bindings::wasi::nn::{errors, graph, inference, tensor};
pub use retrieval::Retriever;
pub use tools::Toolbox;

/// A loaded graph handed to a guest.
pub struct NnGraph(Graph);

/// One execution context: a decoder sequence (with its KV cache) or an encoder.
pub enum NnContext {
    /// Decoder sequence, stepped by its graph's scheduler (shared so a step can be awaited
    /// without holding the resource table).
    Decoder(Arc<Sequence>),
    /// Encoder.
    Encoder(Arc<EncoderGraph>),
}

/// A tensor owned by the guest's resource table.
pub struct NnTensor {
    dims: Vec<u32>,
    ty: tensor::TensorType,
    data: TensorData,
}

/// A tensor's values: the little-endian bytes a guest wrote, or an output of ours kept as
/// it came from ONNX Runtime until the guest reads it. A logits row (~200 KB) is read
/// once per decode step, so converting it there, straight into the buffer the guest
/// receives, is the only copy the host makes after the run.
enum TensorData {
    Bytes(Vec<u8>),
    F32(Vec<f32>),
}

impl TensorData {
    fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::F32(v) => v.len() * 4,
        }
    }

    fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Self::Bytes(b) => b.clone(),
            // The values' memory is their little-endian bytes: one copy.
            #[cfg(target_endian = "little")]
            Self::F32(values) => bytemuck::cast_slice(values).to_vec(),
            #[cfg(target_endian = "big")]
            Self::F32(values) => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// An error resource: code plus the backend's real message.
pub struct NnErrorResource {
    code: errors::ErrorCode,
    message: String,
}

/// What a handler call may reach besides its sandbox.
pub struct HandlerCtx {
    /// Models.
    pub inference: Arc<Inference>,
    /// Stream sink, for `stream: true` requests.
    pub output: Option<mpsc::Sender<String>>,
    /// The caller's tenant's deployed tools.
    pub tools: Option<Arc<dyn Toolbox>>,
    /// Knowledge-base search scoped to the caller's tenant (the RAG handler's).
    pub retrieval: Option<Arc<dyn Retriever>>,
    /// The caller's tenant: cached prompt prefixes are shared only within it.
    pub tenant: String,
}

impl HandlerCtx {
    /// The tenant as a prefix-cache scope.
    fn prefix_scope(&self) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        BuildHasherDefault::<DefaultHasher>::default().hash_one(&self.tenant)
    }

    /// A context that reaches models only: no stream, tools or retrieval.
    pub fn models_only(inference: Arc<Inference>) -> Self {
        Self { inference, output: None, tools: None, retrieval: None, tenant: String::new() }
    }
}

/// A handler component ready to instantiate.
#[derive(Clone)]
pub struct HandlerFunction {
    pre: bindings::RagHandlerPre<State>,
    /// Limits of one request.
    pub limits: Limits,
}

impl std::fmt::Debug for HandlerFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFunction").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Adds the handler imports (beyond WASI) to a linker.
pub(super) fn add_to_linker(linker: &mut wasmtime::component::Linker<State>) -> wasmtime::Result<()> {
    bindings::RagHandler::add_to_linker::<State, HasSelf<State>>(linker, |s| s)
}

impl Runtime {
    /// Links a handler component; the error says what is missing.
    pub fn prepare_handler(&self, component: &Component, limits: Limits) -> Result<HandlerFunction, String> {
        let pre = self
            .handler_linker
            .instantiate_pre(component)
            .map_err(|e| format!("handler needs an import the host does not provide: {e}"))?;
        let pre = bindings::RagHandlerPre::new(pre)
            .map_err(|e| format!("component does not export `tensoras:platform/handler@0.1.0`: {e}"))?;
        Ok(HandlerFunction { pre, limits })
    }

    /// Runs one API request through a handler.
    pub async fn call_handler(
        &self,
        f: &HandlerFunction,
        ctx: HandlerCtx,
        req: HandlerRequest,
    ) -> Result<Result<HandlerResponse, HandlerError>, InvokeError> {
        let pre = f.pre.clone();
        self.run_with(&f.limits, &Sandbox::default(), Some(ctx), move |store| {
            async move {
                let inst = pre.instantiate_async(&mut *store).await?;
                inst.tensoras_platform_handler().call_handle(&mut *store, &req).await
            }
            .boxed()
        })
        .await
    }
}

impl State {
    fn handler(&self) -> wasmtime::Result<&HandlerCtx> {
        self.handler.as_ref().ok_or_else(|| wasmtime::format_err!("handler imports used outside a handler call"))
    }

    fn nn_error(&mut self, e: NnError) -> wasmtime::Result<Resource<NnErrorResource>> {
        let code = match e.code {
            NnErrorCode::InvalidArgument => errors::ErrorCode::InvalidArgument,
            NnErrorCode::TooLarge => errors::ErrorCode::TooLarge,
            NnErrorCode::RuntimeError => errors::ErrorCode::RuntimeError,
        };
        Ok(self.table().push(NnErrorResource { code, message: e.message })?)
    }
}

fn invalid(message: impl Into<String>) -> NnError {
    NnError { code: NnErrorCode::InvalidArgument, message: message.into() }
}

impl graph::Host for State {
    fn load(
        &mut self,
        _builder: Vec<graph::GraphBuilder>,
        _encoding: graph::GraphEncoding,
        _target: graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<NnGraph>, Resource<NnErrorResource>>> {
        let e = NnError {
            code: NnErrorCode::InvalidArgument,
            message: "guests cannot load graph bytes; use load-by-name with a model id".into(),
        };
        Ok(Err(self.nn_error(e)?))
    }

    fn load_by_name(&mut self, name: String) -> wasmtime::Result<Result<Resource<NnGraph>, Resource<NnErrorResource>>> {
        let found = self.handler()?.inference.get(&name).map(|l| l.graph.clone());
        match found {
            Some(g) => Ok(Ok(self.table().push(NnGraph(g))?)),
            None => {
                let code = errors::ErrorCode::NotFound;
                Ok(Err(self.table().push(NnErrorResource { code, message: format!("no installed model named {name:?}") })?))
            }
        }
    }
}

impl graph::HostGraph for State {
    fn init_execution_context(
        &mut self,
        g: Resource<NnGraph>,
    ) -> wasmtime::Result<Result<Resource<NnContext>, Resource<NnErrorResource>>> {
        let scope = self.handler()?.prefix_scope();
        let ctx = match &self.table().get(&g)?.0 {
            Graph::Decoder(d) => NnContext::Decoder(Arc::new(d.sequence(scope))),
            Graph::Encoder(e) => NnContext::Encoder(e.clone()),
        };
        Ok(Ok(self.table().push(ctx)?))
    }

    fn drop(&mut self, rep: Resource<NnGraph>) -> wasmtime::Result<()> {
        self.table().delete(rep)?;
        Ok(())
    }
}

/// Reads an I64 tensor's values, checking shape and length.
fn i64_values(t: &NnTensor, name: &str) -> Result<Vec<i64>, NnError> {
    if t.ty != tensor::TensorType::I64 {
        return Err(invalid(format!("{name} must be an I64 tensor")));
    }
    let bytes = t.dims.iter().try_fold(8usize, |acc, &d| acc.checked_mul(d as usize));
    let data = match &t.data {
        TensorData::Bytes(b) if bytes == Some(b.len()) => b,
        _ => return Err(invalid(format!("{name}: dimensions {:?} do not match {} bytes of data", t.dims, t.data.len()))),
    };
    Ok(data.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
}

fn f32_tensor(dims: Vec<u32>, values: Vec<f32>) -> NnTensor {
    NnTensor { dims, ty: tensor::TensorType::Fp32, data: TensorData::F32(values) }
}

/// Runs blocking ONNX work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, NnError> + Send + 'static) -> Result<T, NnError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(NnError { code: NnErrorCode::RuntimeError, message: format!("inference task failed: {e}") }))
}

impl inference::HostGraphExecutionContext for State {
    async fn compute(
        &mut self,
        ctx: Resource<NnContext>,
        inputs: Vec<(String, Resource<NnTensor>)>,
    ) -> wasmtime::Result<Result<Vec<(String, Resource<NnTensor>)>, Resource<NnErrorResource>>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            tensors.push((name, self.table().delete(t)?));
        }
        let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let result = match self.table().get(&ctx)? {
            NnContext::Decoder(seq) => {
                let seq = seq.clone();
                match find("input_ids").ok_or_else(|| invalid("missing input tensor \"input_ids\"")).and_then(|t| {
                    if t.dims.len() != 2 || t.dims[0] != 1 {
                        return Err(invalid(format!("input_ids must be [1, n], got {:?}", t.dims)));
                    }
                    i64_values(t, "input_ids")
                }) {
                    Err(e) => Err(e),
                    Ok(ids) => seq
                        .step(ids)
                        .await
                        .map(|logits| vec![("logits".to_owned(), f32_tensor(vec![1, logits.len() as u32], logits))]),
                }
            }
            NnContext::Encoder(enc) => {
                let enc = enc.clone();
                let prepared = (|| {
                    let ids_t = find("input_ids").ok_or_else(|| invalid("missing input tensor \"input_ids\""))?;
                    if ids_t.dims.len() != 2 {
                        return Err(invalid(format!("input_ids must be [batch, seq], got {:?}", ids_t.dims)));
                    }
                    let (b, s) = (ids_t.dims[0] as usize, ids_t.dims[1] as usize);
                    let ids = i64_values(ids_t, "input_ids")?;
                    let mask = match find("attention_mask") {
                        Some(t) if t.dims == ids_t.dims => i64_values(t, "attention_mask")?,
                        Some(t) => {
                            return Err(invalid(format!(
                                "attention_mask must match input_ids {:?}, got {:?}",
                                ids_t.dims, t.dims
                            )));
                        }
                        None => vec![1; ids.len()],
                    };
                    let types = find("token_type_ids").map(|t| i64_values(t, "token_type_ids")).transpose()?;
                    Ok((b, s, ids, mask, types))
                })();
                match prepared {
                    Err(e) => Err(e),
                    Ok((b, s, ids, mask, types)) => {
                        let hidden = enc.hidden();
                        blocking(move || enc.encode(b, s, ids, mask, types)).await.map(|values| {
                            vec![("last_hidden_state".to_owned(), f32_tensor(vec![b as u32, s as u32, hidden as u32], values))]
                        })
                    }
                }
            }
        };
        match result {
            Ok(outputs) => {
                let mut out = Vec::with_capacity(outputs.len());
                for (name, t) in outputs {
                    out.push((name, self.table().push(t)?));
                }
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(self.nn_error(e)?)),
        }
    }

    fn drop(&mut self, rep: Resource<NnContext>) -> wasmtime::Result<()> {
        self.table().delete(rep)?;
        Ok(())
    }
}

impl inference::Host for State {}

impl tensor::HostTensor for State {
    fn new(&mut self, dims: Vec<u32>, ty: tensor::TensorType, data: Vec<u8>) -> wasmtime::Result<Resource<NnTensor>> {
        Ok(self.table().push(NnTensor { dims, ty, data: TensorData::Bytes(data) })?)
    }
    fn dimensions(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table().get(&t)?.dims.clone())
    }
    fn ty(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<tensor::TensorType> {
        Ok(self.table().get(&t)?.ty)
    }
    fn data(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&t)?.data.to_le_bytes())
    }
    fn drop(&mut self, rep: Resource<NnTensor>) -> wasmtime::Result<()> {
        self.table().delete(rep)?;
        Ok(())
    }
}

impl tensor::Host for State {}

impl errors::HostError for State {
    fn code(&mut self, e: Resource<NnErrorResource>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(self.table().get(&e)?.code)
    }
    fn data(&mut self, e: Resource<NnErrorResource>) -> wasmtime::Result<String> {
        Ok(self.table().get(&e)?.message.clone())
    }
    fn drop(&mut self, rep: Resource<NnErrorResource>) -> wasmtime::Result<()> {
        self.table().delete(rep)?;
        Ok(())
    }
}

impl errors::Host for State {}

impl State {
    fn text(&self, model: &str) -> wasmtime::Result<Result<Arc<crate::inference::TextModel>, tokenizer::TokenizerError>> {
        Ok(match self.handler()?.inference.get(model) {
            Some(l) => Ok(l.text.clone()),
            None => Err(tokenizer::TokenizerError::UnknownModel(model.to_owned())),
        })
    }
}

/// A chat template's model and input: the text side, the messages, the tools.
type ChatInput = (Arc<crate::inference::TextModel>, Vec<crate::inference::text::TemplateMessage>, Option<serde_json::Value>);

/// Texts up to this size are tokenised in place; longer ones on the blocking pool, so a
/// long prompt does not hold an async worker (and every request queued behind it).
const INLINE_ENCODE_BYTES: usize = 16 << 10;

/// What the tokenizer calls tokenise: plain text with or without special tokens recognised, or a
/// rendered chat.
enum Encodable {
    Text { text: String, add_special: bool },
    PlainText(String),
    Chat(crate::inference::text::ChatPrompt),
}

impl Encodable {
    fn len(&self) -> usize {
        match self {
            Self::Text { text, .. } | Self::PlainText(text) => text.len(),
            Self::Chat(prompt) => prompt.len(),
        }
    }

    fn encode(&self, t: &crate::inference::TextModel) -> Result<Vec<u32>, String> {
        match self {
            Self::Text { text, add_special } => t.encode(text, *add_special),
            Self::PlainText(text) => t.encode_text(text),
            Self::Chat(prompt) => t.encode_chat(prompt),
        }
    }
}

impl State {
    /// Tokenises `input` with `model`'s tokenizer, refusing what cannot fit its context.
    async fn tokenise(
        &mut self,
        model: String,
        input: Encodable,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        let Some(loaded) = self.handler()?.inference.get(&model) else {
            return Ok(Err(tokenizer::TokenizerError::UnknownModel(model)));
        };
        let t = loaded.text.clone();
        // A prompt that cannot fit the context is refused before tokenising it: the
        // guest's context check would refuse it anyway, after seconds of work and
        // gigabytes of memory for a multi-megabyte text.
        let context = loaded.model.context_length();
        let len = input.len();
        if t.max_prompt_bytes(context).is_some_and(|limit| len > limit) {
            return Ok(Err(tokenizer::TokenizerError::InvalidInput(format!(
                "This model's maximum context length is {context} tokens; the text ({len} bytes) cannot fit in it."
            ))));
        }
        if len <= INLINE_ENCODE_BYTES {
            return Ok(input.encode(&t).map_err(tokenizer::TokenizerError::InvalidInput));
        }
        Ok(tokio::task::spawn_blocking(move || input.encode(&t))
            .await
            .unwrap_or_else(|e| Err(format!("tokenizer task failed: {e}")))
            .map_err(tokenizer::TokenizerError::InvalidInput))
    }

    /// What both chat-template calls start from: the model's text side and the template's
    /// input from the WIT records (`tools` and `tool_calls` parsed).
    fn chat_input(
        &self,
        model: &str,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<ChatInput, tokenizer::TokenizerError>> {
        let text = match self.text(model)? {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let parse = |s: &str, what: &str| {
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| tokenizer::TokenizerError::InvalidInput(format!("{what} is not valid JSON: {e}")))
        };
        let input = || -> Result<_, tokenizer::TokenizerError> {
            let tools = tools.as_deref().map(|t| parse(t, "tools")).transpose()?;
            let mut msgs = Vec::with_capacity(messages.len());
            for m in messages {
                let tool_calls = m.tool_calls.as_deref().map(|t| parse(t, "tool_calls")).transpose()?;
                msgs.push(crate::inference::text::TemplateMessage {
                    role: m.role,
                    content: m.content,
                    tool_call_id: m.tool_call_id,
                    tool_calls,
                });
            }
            Ok((msgs, tools))
        };
        Ok(input().map(|(msgs, tools)| (text, msgs, tools)))
    }
}

impl tokenizer::Host for State {
    async fn encode(
        &mut self,
        model: String,
        text: String,
        add_special: bool,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        self.tokenise(model, Encodable::Text { text, add_special }).await
    }

    async fn encode_text(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        self.tokenise(model, Encodable::PlainText(text)).await
    }

    async fn encode_chat(
        &mut self,
        model: String,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        let (text, msgs, tools) = match self.chat_input(&model, messages, tools)? {
            Ok(input) => input,
            Err(e) => return Ok(Err(e)),
        };
        // Rendering is cheap next to tokenising; the rendered length decides where that runs.
        let prompt = match text.render_chat(&msgs, tools) {
            Ok(p) => p,
            Err(e) => return Ok(Err(tokenizer::TokenizerError::InvalidInput(e))),
        };
        self.tokenise(model, Encodable::Chat(prompt)).await
    }

    fn decode(
        &mut self,
        model: String,
        tokens: Vec<u32>,
        skip_special: bool,
    ) -> wasmtime::Result<Result<String, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.and_then(|t| t.decode(&tokens, skip_special).map_err(tokenizer::TokenizerError::InvalidInput)))
    }

    fn apply_chat_template(
        &mut self,
        model: String,
        messages: Vec<tokenizer::ChatMessage>,
        tools: Option<String>,
    ) -> wasmtime::Result<Result<String, tokenizer::TokenizerError>> {
        let (text, msgs, tools) = match self.chat_input(&model, messages, tools)? {
            Ok(input) => input,
            Err(e) => return Ok(Err(e)),
        };
        Ok(text.apply_chat_template(&msgs, tools).map_err(tokenizer::TokenizerError::InvalidInput))
    }

    fn stop_tokens(&mut self, model: String) -> wasmtime::Result<Result<Vec<u32>, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.map(|t| t.stop_tokens().to_vec()))
    }

    fn vocabulary(&mut self, model: String) -> wasmtime::Result<Result<tokenizer::TokenBytes, tokenizer::TokenizerError>> {
        Ok(self.text(&model)?.map(|t| {
            let v = t.vocabulary();
            tokenizer::TokenBytes { bytes: v.bytes.clone(), ends: v.ends.clone() }
        }))
    }
}

impl models::Host for State {
    fn get(&mut self, model: String) -> wasmtime::Result<Option<models::ModelInfo>> {
        let Some(l) = self.handler()?.inference.get(&model) else { return Ok(None) };
        let m = &l.model;
        let vocab = m.installed.as_ref().map_or(0, |i| i.config.vocab_size as u32);
        let dims = match &l.graph {
            Graph::Decoder(_) => 0,
            Graph::Encoder(e) => e.hidden() as u32,
        };
        Ok(Some(models::ModelInfo {
            id: m.manifest.id.clone(),
            kind: m.manifest.kind.as_str().to_owned(),
            context_length: m.context_length(),
            vocab_size: vocab,
            embedding_dimensions: dims,
            default_temperature: m.manifest.defaults.temperature,
            default_top_p: m.manifest.defaults.top_p,
            default_max_tokens: m.manifest.defaults.max_tokens,
            template_tools: l.text.template_tools(),
            tool_call_format: m.manifest.tool_call_format.as_str().to_owned(),
        }))
    }
}

impl output::Host for State {
    async fn send(&mut self, chunk: String) -> wasmtime::Result<bool> {
        let Some(tx) = self.handler()?.output.clone() else { return Ok(true) };
        // A full channel makes the guest wait: generation keeps pace with the client.
        Ok(tx.send(chunk).await.is_ok())
    }
}

impl bindings::tensoras::platform::types::Host for State {}
