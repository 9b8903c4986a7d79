//! Bindings of the `rag-handler` world, which includes `chat-handler`: the
//! chat component links only what it calls, so it imports no `retrieval`
//! (wit-component drops unused imports), while both handler crates share
//! one set of generated types and export through [`export`].
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "tensoras:platform/rag-handler",
    // wit-parser needs the @unstable clocks-timezone feature to resolve
    // the vendored WASI packages (see guest-sdk/src/lib.rs).
    features: ["clocks-timezone"],
    // Bind the world's wasi:nn imports here as well (they are not
    // provided by another crate).
    generate_all,
    // The export macro is used by the handler crates (chat, rag).
    pub_export_macro: true,
});
