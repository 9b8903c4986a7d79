//! `summarize`: an HTTP function that summarises the text it is sent, streaming the
//! model's words back as server-sent events while they are generated.
//!
//! `POST /v1/functions/summarize/invoke` with the text as the body answers
//! `text/event-stream`: one `data: {"text": "..."}` event per piece of the summary, then
//! `data: [DONE]`. `?model=ID` picks the model (default `smollm2-135m-instruct`; the
//! manifest must grant it in `grants.models`), `?words=N` the summary's length (default 30).
//! A refused or failed model call is answered 403 or 502 with an OpenAI-shaped error.

use std::io::{Read, Write};

use tensoras_guest::ai::{self, Chat};
use tensoras_guest::serde_json::json;
use tensoras_guest::{Error, HttpFunction, Request, Responder};

const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

struct Summarize;

impl HttpFunction for Summarize {
    fn handle(mut req: Request, responder: Responder) {
        let query = req.path_with_query().split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
        let param = |name: &str| {
            query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.to_owned())
        };
        let model = param("model").unwrap_or_else(|| DEFAULT_MODEL.into());
        let words: u32 = param("words").and_then(|w| w.parse().ok()).unwrap_or(30).clamp(5, 200);
        let mut text = String::new();
        if req.method() != "POST" || req.body().read_to_string(&mut text).is_err() || text.trim().is_empty() {
            return error(responder, 400, "invalid_request_error", "POST the text to summarise as the request body (UTF-8).");
        }
        let chat = Chat::new(model)
            .system(format!("Summarise the user's text in at most {words} words. Answer with the summary only."))
            .user(text)
            .temperature(0.0)
            .max_tokens(words * 2);
        // Start generating before answering, so a refusal can still be a proper status.
        let stream = match ai::chat_stream(&chat) {
            Ok(s) => s,
            Err(e @ Error::NotPermitted(_)) => return error(responder, 403, "permission_error", &e.to_string()),
            Err(e) => return error(responder, 502, "server_error", &e.to_string()),
        };
        let Ok(mut body) = responder.start(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache")]) else {
            return;
        };
        for piece in stream {
            let event = match piece {
                Ok(text) => json!({"text": text}),
                Err(e) => json!({"error": {"message": e.to_string(), "type": "server_error"}}),
            };
            if write!(body, "data: {event}\n\n").and_then(|()| body.flush()).is_err() {
                return; // the client went away: dropping the stream stops generation
            }
        }
        if write!(body, "data: [DONE]\n\n").is_ok() {
            let _ = body.finish();
        }
    }
}

fn error(responder: Responder, status: u16, kind: &str, message: &str) {
    let payload = json!({"error": {"message": message, "type": kind, "param": null, "code": null}}).to_string();
    if let Ok(mut body) = responder.start(status, [("content-type", "application/json")]) {
        let _ = body.write_all(payload.as_bytes());
    }
}

tensoras_guest::export_http!(Summarize);
