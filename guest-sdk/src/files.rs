//! The invoking tenant's files, uploaded at `POST /v1/files` (needs `"files": true` in the
//! manifest's grants). Read-only; another tenant's file id is [`Error::NotFound`].
//!
//! ```no_run
//! let info = tensoras_guest::files::info("file-abc")?;
//! let text = tensoras_guest::files::read_string("file-abc")?;
//! assert_eq!(info.bytes as usize, text.len());
//! # Ok::<(), tensoras_guest::Error>(())
//! ```

use crate::Error;
use crate::wit::platform::tensoras::platform::files as raw;

pub use raw::FileInfo;

/// The most one [`read_at`] returns; [`read`] reads a larger file in pieces of this size.
pub const MAX_READ: u32 = 4 << 20;

/// The file's metadata: name, purpose, size, content type.
pub fn info(id: &str) -> Result<FileInfo, Error> {
    Ok(raw::info(id)?)
}

/// Up to `length` bytes from `offset` (at most [`MAX_READ`]; fewer at the end, none past it).
pub fn read_at(id: &str, offset: u64, length: u32) -> Result<Vec<u8>, Error> {
    Ok(raw::read(id, offset, length)?)
}

/// The whole content. Mind the function's memory limit with large files: [`read_at`]
/// reads a piece at a time.
pub fn read(id: &str) -> Result<Vec<u8>, Error> {
    let mut content = Vec::new();
    loop {
        let piece = read_at(id, content.len() as u64, MAX_READ)?;
        if piece.is_empty() {
            return Ok(content);
        }
        content.extend_from_slice(&piece);
    }
}

/// The whole content as text (lossy where it is not UTF-8).
pub fn read_string(id: &str) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(&read(id)?).into_owned())
}
