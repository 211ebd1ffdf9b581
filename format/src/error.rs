use std::io;

/// Everything that can be wrong with an image or with what a writer was given. Each variant
/// says where (offset, field) and what was expected, so a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("image truncated: {what} at offset {offset} needs {needed} bytes, but the file has {file_len}")]
    Truncated { what: &'static str, offset: u64, needed: u64, file_len: u64 },
    #[error("not a criu-cet image: {what} magic at offset {offset} is {found}, expected {expected}")]
    BadMagic { what: &'static str, offset: u64, expected: String, found: String },
    #[error(
        "image format version {major}.{minor} is newer than this reader (it reads {supported}.x): \
         use a criu-cet release that reads format {major}.x"
    )]
    UnsupportedVersion { major: u16, minor: u16, supported: u16 },
    #[error(
        "image needs incompatible features {flags:#x} that this reader does not know \
         (known: {known:#x}): use a newer criu-cet"
    )]
    UnknownIncompatFlags { flags: u64, known: u64 },
    #[error(
        "checksum mismatch in {what} (offset {offset}, {length} bytes): stored {stored:#010x}, \
         computed {computed:#010x}; the image is corrupt, take the checkpoint again"
    )]
    Checksum { what: String, offset: u64, length: u64, stored: u32, computed: u32 },
    #[error("invalid {field} at offset {offset}: expected {expected}, found {found}")]
    Invalid { field: String, offset: u64, expected: String, found: String },
    #[error("writer input rejected: {0}")]
    Input(String),
    #[error("JSON: {0}")]
    Json(String),
}

impl FormatError {
    pub(crate) fn io(doing: &'static str) -> impl FnOnce(io::Error) -> FormatError {
        move |source| FormatError::Io { doing, source }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        offset: u64,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> FormatError {
        FormatError::Invalid { field: field.into(), offset, expected: expected.into(), found: found.into() }
    }
}
