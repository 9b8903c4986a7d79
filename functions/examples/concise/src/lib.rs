//! `concise`: a chat function, deployed with `"kind": "chat"` and used as model
//! `fn:concise` through the unchanged OpenAI SDKs. It puts an instruction to answer in one
//! short sentence before the conversation and forwards the request to a model the manifest
//! grants (`$MODEL` from `grants.env`, else `smollm2-135m-instruct`), streamed or not, with
//! everything else the client sent (temperature, seed, max_tokens, response_format...).

use tensoras_guest::ai::Chat;
use tensoras_guest::chat::{ChatError, ChatFunction, ChatRequest};
use tensoras_guest::serde_json::Value;

const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

struct Concise;

impl ChatFunction for Concise {
    fn handle(req: ChatRequest) -> Result<Value, ChatError> {
        if req.path != "/v1/chat/completions" {
            return Err(ChatError::invalid("model", format!("{} serves /v1/chat/completions only", req.model())));
        }
        let model = std::env::var("MODEL").unwrap_or_else(|_| DEFAULT_MODEL.into());
        let chat = Chat::from_body(req.body.clone())?.set("model", model).system_first("Answer in one short sentence.");
        req.forward(&chat)
    }
}

tensoras_guest::export_chat!(Concise);
