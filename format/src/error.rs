use std::io;

/// Everything that can be wrong with an image or with what a writer was given. Each variant
/// says where (offset, field) and what was expected, so a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing the underlying stream failed.
    #[error("I/O error while {doing}: {source}")]
    Io {
        /// What the reader or writer was doing, e.g. "reading the header".
        doing: &'static str,
        /// The error from the stream.
        #[source]
        source: io::Error,
    },
    /// The file is too short to hold a structure the format requires (header and footer).
    #[error("image truncated: {what} at offset {offset} needs {needed} bytes, but the file has {file_len}")]
    Truncated {
        /// The structure that is cut short.
        what: &'static str,
        /// Byte offset in the file where that structure starts.
        offset: u64,
        /// Bytes the structure needs from `offset`.
        needed: u64,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// A header, section or footer magic is not the one the format defines.
    #[error("not a criu-cet image: {what} magic at offset {offset} is {found}, expected {expected}")]
    BadMagic {
        /// Which magic: header, section or footer.
        what: &'static str,
        /// Byte offset of the magic in the file.
        offset: u64,
        /// The magic the format defines, printable.
        expected: String,
        /// The bytes found there, printable.
        found: String,
    },
    /// The image's major format version is not the one this reader reads.
    #[error(
        "image format version {major}.{minor} is newer than this reader (it reads {supported}.x): \
         use a criu-cet release that reads format {major}.x"
    )]
    UnsupportedVersion {
        /// The image's major version.
        major: u16,
        /// The image's minor version.
        minor: u16,
        /// The major version this reader reads.
        supported: u16,
    },
    /// The header sets incompatible feature flags this reader does not know.
    #[error(
        "image needs incompatible features {flags:#x} that this reader does not know \
         (known: {known:#x}): use a newer criu-cet"
    )]
    UnknownIncompatFlags {
        /// The unknown incompatible flags the image sets.
        flags: u64,
        /// Every incompatible flag this reader knows.
        known: u64,
    },
    /// A CRC-32C stored in the image does not match the bytes it covers.
    #[error(
        "checksum mismatch in {what} (offset {offset}, {length} bytes): stored {stored:#010x}, \
         computed {computed:#010x}; the image is corrupt, take the checkpoint again"
    )]
    Checksum {
        /// The part of the image the checksum covers.
        what: String,
        /// Byte offset of the covered bytes in the file.
        offset: u64,
        /// Number of bytes covered.
        length: u64,
        /// The CRC-32C stored in the image.
        stored: u32,
        /// The CRC-32C computed over the bytes read.
        computed: u32,
    },
    /// A field holds a value the format does not allow there.
    #[error("invalid {field} at offset {offset}: expected {expected}, found {found}")]
    Invalid {
        /// The field's name.
        field: String,
        /// Byte offset of the field (or of its section) in the file; 0 where none applies.
        offset: u64,
        /// What the format allows.
        expected: String,
        /// What the image holds.
        found: String,
    },
    /// The caller, not the image, is wrong: metadata or pages a writer must not write, or a
    /// record asked for beyond the end of a section.
    #[error("writer input rejected: {0}")]
    Input(String),
    /// A JSON document (see `json`) could not be read or does not describe a valid image.
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
