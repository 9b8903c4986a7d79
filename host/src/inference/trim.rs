//! Gives the heap's free pages back to the operating system once a burst of sequences is
//! over.
//!
//! A burst of sequences allocates hundreds of MiB of KV buffers (each row of a group has
//! room for 256 positions: 11 MiB a row for SmolLM2) and frees them when the sequences end.
//! glibc's `free` keeps most of that in its arenas: once a large block has been freed,
//! blocks of that size no longer get their own mapping (the mmap threshold follows the
//! largest block freed, up to 32 MiB), and pages in the middle of an arena are not
//! returned. The process then keeps its peak (335 MiB to 1.3 GB after 64 streams of
//! SmolLM2, never released) although nothing uses it. `malloc_trim` returns every arena's
//! free pages; the scheduler calls it when no sequence is left after a burst.
//!
//! ONNX Runtime's CPU arena is the other keeper of peaks: it grows to the largest set of
//! intermediate tensors any run needed (a batched prefill's activations and logits) and
//! never shrinks (the load campaign's server, after 200 concurrent requests, stayed at
//! 4.4 GB once idle although malloc_trim ran). Sessions are built without it: their tensors
//! come from the C heap, which `malloc_trim` can hand back.
#![allow(unsafe_code)]

use ort::AsPointer;
use ort::session::builder::SessionBuilder;

/// The session allocates from the C heap instead of keeping an arena of its peak.
pub(super) fn without_cpu_arena(mut builder: SessionBuilder) -> ort::Result<SessionBuilder> {
    // SAFETY: the pointer is the builder's own live OrtSessionOptions, and
    // DisableCpuMemArena only sets a flag on it.
    let status = unsafe { (ort::api().DisableCpuMemArena)(builder.ptr_mut()) };
    // SAFETY: `status` was just returned by ONNX Runtime and is not used after this.
    unsafe { ort::error::status_to_result(status) }?;
    Ok(builder)
}

/// Returns the free pages of the C heap to the operating system (glibc only; elsewhere,
/// nothing).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn release_free_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers; it locks each arena itself and only
    // advises the kernel that free pages are unused, so any thread may call it at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Returns the free pages of the C heap to the operating system (glibc only; elsewhere,
/// nothing).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release_free_memory() {}
