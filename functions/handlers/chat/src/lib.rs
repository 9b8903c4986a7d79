//! # chat
//!
//! The handler component behind `POST /v1/chat/completions` and
//! `POST /v1/completions` (world `tensoras:platform/chat-handler`). All of
//! the work is in `chat-core`, which `functions/handlers/rag` shares; this crate only
//! exports it as a component.

use chat_core::bindings;

handler_common::export_handler!(ChatHandler, chat_core::handle);
