//! The two ONNX Runtime calls `ort` has no safe form for, which an in-place KV cache needs.
//!
//! GroupQueryAttention updates its cache in place when `past_key_values.*` and `present.*`
//! are the same buffer: it writes the new positions and reads the old ones where they are,
//! instead of zeroing a new `present` and copying the whole past into it every step (the
//! copy grows with the context: at 1,000 positions it was 16 % of a SmolLM2 decode step).
//! Binding one value as both input and output is what ONNX Runtime's own generate loop
//! does, but `ort`'s `IoBinding::bind_output` takes the output by value, and its
//! `run_binding` asks ONNX Runtime for a new handle to every bound output while it keeps
//! only those bound through `ort` (the others would leak, and with them the buffers). So
//! the outputs are bound and the run is started through the C API here, and the results
//! are read from the bound values themselves.
#![allow(unsafe_code)]

use std::ffi::CString;

use ort::AsPointer as _;
use ort::io_binding::IoBinding;
use ort::session::Session;
use ort::value::Value;
use ort::value::ValueTypeMarker;

/// Binds the output `name` to `value`, which may also be bound as an input.
pub(super) fn bind_output<T: ValueTypeMarker + ?Sized>(binding: &mut IoBinding, name: &str, value: &Value<T>) -> ort::Result<()> {
    let name = CString::new(name).map_err(|e| ort::Error::new(format!("output name: {e}")))?;
    // SAFETY: the binding and the value are live `ort` objects, so their pointers are valid
    // and non-null; ONNX Runtime copies the name and keeps its own reference to the
    // OrtValue (an OrtValue shares its buffer), released with the binding. The returned
    // status is null or an OrtStatus that `status_to_result` releases.
    unsafe { ort::error::status_to_result((ort::api().BindOutput)(binding.ptr_mut(), name.as_ptr(), value.ptr())) }
}

/// Runs `session` on `binding`; the outputs are written into the bound values.
pub(super) fn run(session: &mut Session, binding: &IoBinding) -> ort::Result<()> {
    // SAFETY: live session and binding (the `&mut` keeps the session to this thread for
    // the run, as `Session::run` does); null run options are allowed by the C API.
    unsafe { ort::error::status_to_result((ort::api().RunWithBinding)(session.ptr_mut(), std::ptr::null(), binding.ptr())) }
}
