//! The host side of `wasi:nn` (graph, inference, tensor, errors) on the host's own ONNX
//! Runtime backend: a graph is a loaded model, an execution context a decoder sequence
//! (stepped by its graph's scheduler) or an encoder run.

use std::sync::Arc;

use wasmtime::component::{Linker, Resource};

use self::bindings::wasi::nn::{errors, graph, inference, tensor};
use super::{HasModels, ModelsView};
use crate::inference::Graph;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "
            import wasi:nn/tensor@0.2.0-rc-2024-10-28;
            import wasi:nn/graph@0.2.0-rc-2024-10-28;
            import wasi:nn/inference@0.2.0-rc-2024-10-28;
            import wasi:nn/errors@0.2.0-rc-2024-10-28;
        ",
        imports: {
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:nn/graph.graph": super::NnGraph,
            "wasi:nn/inference.graph-execution-context": super::NnContext,
            "wasi:nn/tensor.tensor": super::NnTensor,
            "wasi:nn/errors.error": super::NnErrorResource,
        },
    });
}

/// Adds the four `wasi:nn` interfaces to `linker`.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ModelsView<'_>,
) -> wasmtime::Result<()> {
    graph::add_to_linker::<T, HasModels>(linker, get)?;
    tensor::add_to_linker::<T, HasModels>(linker, get)?;
    inference::add_to_linker::<T, HasModels>(linker, get)?;
    errors::add_to_linker::<T, HasModels>(linker, get)?;
    Ok(())
}
use crate::inference::decoder::Sequence;
use crate::inference::{EncoderGraph, NnError, NnErrorCode};

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

impl ModelsView<'_> {
    fn nn_error(&mut self, e: NnError) -> wasmtime::Result<Resource<NnErrorResource>> {
        let code = match e.code {
            NnErrorCode::InvalidArgument => errors::ErrorCode::InvalidArgument,
            NnErrorCode::TooLarge => errors::ErrorCode::TooLarge,
            NnErrorCode::RuntimeError => errors::ErrorCode::RuntimeError,
        };
        Ok(self.table.push(NnErrorResource { code, message: e.message })?)
    }
}

fn invalid(message: impl Into<String>) -> NnError {
    NnError { code: NnErrorCode::InvalidArgument, message: message.into() }
}

impl graph::Host for ModelsView<'_> {
    fn load(
        &mut self,
        _builder: Vec<graph::GraphBuilder>,
        _encoding: graph::GraphEncoding,
        _target: graph::ExecutionTarget,
    ) -> wasmtime::Result<Result<Resource<NnGraph>, Resource<NnErrorResource>>> {
        Ok(Err(self.nn_error(invalid("guests cannot load graph bytes; use load-by-name with a model id"))?))
    }

    fn load_by_name(&mut self, name: String) -> wasmtime::Result<Result<Resource<NnGraph>, Resource<NnErrorResource>>> {
        let found = self.inference()?.get(&name).map(|l| l.graph.clone());
        match found {
            Some(g) => Ok(Ok(self.table.push(NnGraph(g))?)),
            None => {
                let code = errors::ErrorCode::NotFound;
                Ok(Err(self.table.push(NnErrorResource { code, message: format!("no installed model named {name:?}") })?))
            }
        }
    }
}

impl graph::HostGraph for ModelsView<'_> {
    fn init_execution_context(
        &mut self,
        g: Resource<NnGraph>,
    ) -> wasmtime::Result<Result<Resource<NnContext>, Resource<NnErrorResource>>> {
        let scope = self.access()?.scope;
        let ctx = match &self.table.get(&g)?.0 {
            Graph::Decoder(d) => NnContext::Decoder(Arc::new(d.sequence(scope))),
            Graph::Encoder(e) => NnContext::Encoder(e.clone()),
        };
        Ok(Ok(self.table.push(ctx)?))
    }

    fn drop(&mut self, rep: Resource<NnGraph>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
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

impl inference::HostGraphExecutionContext for ModelsView<'_> {
    async fn compute(
        &mut self,
        ctx: Resource<NnContext>,
        inputs: Vec<(String, Resource<NnTensor>)>,
    ) -> wasmtime::Result<Result<Vec<(String, Resource<NnTensor>)>, Resource<NnErrorResource>>> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            tensors.push((name, self.table.delete(t)?));
        }
        let find = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let result = match self.table.get(&ctx)? {
            NnContext::Decoder(seq) => {
                let seq = seq.clone();
                let cached = self.access()?.cached_tokens.clone();
                match find("input_ids").ok_or_else(|| invalid("missing input tensor \"input_ids\"")).and_then(|t| {
                    if t.dims.len() != 2 || t.dims[0] != 1 {
                        return Err(invalid(format!("input_ids must be [1, n], got {:?}", t.dims)));
                    }
                    i64_values(t, "input_ids")
                }) {
                    Err(e) => Err(e),
                    Ok(ids) => {
                        let step = seq.step(ids).await;
                        cached.fetch_add(seq.take_reused(), std::sync::atomic::Ordering::Relaxed);
                        step.map(|logits| vec![("logits".to_owned(), f32_tensor(vec![1, logits.len() as u32], logits))])
                    }
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
                    out.push((name, self.table.push(t)?));
                }
                Ok(Ok(out))
            }
            Err(e) => Ok(Err(self.nn_error(e)?)),
        }
    }

    fn drop(&mut self, rep: Resource<NnContext>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl inference::Host for ModelsView<'_> {}

impl tensor::HostTensor for ModelsView<'_> {
    fn new(&mut self, dims: Vec<u32>, ty: tensor::TensorType, data: Vec<u8>) -> wasmtime::Result<Resource<NnTensor>> {
        Ok(self.table.push(NnTensor { dims, ty, data: TensorData::Bytes(data) })?)
    }
    fn dimensions(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&t)?.dims.clone())
    }
    fn ty(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<tensor::TensorType> {
        Ok(self.table.get(&t)?.ty)
    }
    fn data(&mut self, t: Resource<NnTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&t)?.data.to_le_bytes())
    }
    fn drop(&mut self, rep: Resource<NnTensor>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl tensor::Host for ModelsView<'_> {}

impl errors::HostError for ModelsView<'_> {
    fn code(&mut self, e: Resource<NnErrorResource>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(self.table.get(&e)?.code)
    }
    fn data(&mut self, e: Resource<NnErrorResource>) -> wasmtime::Result<String> {
        Ok(self.table.get(&e)?.message.clone())
    }
    fn drop(&mut self, rep: Resource<NnErrorResource>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl errors::Host for ModelsView<'_> {}
