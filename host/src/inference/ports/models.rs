//! The host side of `tensoras:platform/models`: what a handler may know of an installed
//! model (kind, context, vocabulary, defaults, template features).

use self::bindings::tensoras::platform::models;
use super::ModelsView;
use crate::inference::Graph;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        interfaces: "import tensoras:platform/models@0.1.0;",
        imports: { default: trappable },
    });
}

impl models::Host for ModelsView<'_> {
    fn get(&mut self, model: String) -> wasmtime::Result<Option<models::ModelInfo>> {
        let Some(l) = self.inference()?.get(&model) else { return Ok(None) };
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
