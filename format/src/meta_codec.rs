//! META section bytes: bincode 2 in its legacy (bincode 1) layout, with an allocation limit.
//! docs/FORMAT.md section 3 spells these bytes out, so no reader needs bincode.

use crate::error::FormatError;
use crate::layout::MAX_META_LEN;
use crate::meta::Metadata;
use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};

type Legacy = Configuration<LittleEndian, Fixint, Limit<{ MAX_META_LEN as usize }>>;

fn config() -> Legacy {
    config::legacy().with_limit::<{ MAX_META_LEN as usize }>()
}

pub fn encode(meta: &Metadata) -> Result<Vec<u8>, FormatError> {
    let bytes = bincode::serde::encode_to_vec(meta, config())
        .map_err(|e| FormatError::Input(format!("metadata does not serialize: {e}")))?;
    if bytes.len() as u64 > MAX_META_LEN {
        return Err(FormatError::Input(format!(
            "metadata is {} bytes, more than the {MAX_META_LEN}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes META. Trailing bytes are fields a newer minor version appended: allowed only when the
/// file's minor version is newer than this reader's.
pub fn decode(bytes: &[u8], offset: u64, trailing_allowed: bool) -> Result<Metadata, FormatError> {
    let (meta, used): (Metadata, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| {
            FormatError::invalid("metadata", offset, "metadata as in FORMAT.md section 3", e.to_string())
        })?;
    if used != bytes.len() && !trailing_allowed {
        return Err(FormatError::invalid(
            "metadata length",
            offset,
            format!("{used} bytes of metadata"),
            format!("{} bytes (trailing bytes in a file of this reader's minor version)", bytes.len()),
        ));
    }
    meta.validate().map_err(|(field, problem)| {
        let at = offset + meta.field_offset(field).unwrap_or(0);
        FormatError::invalid(format!("metadata {field}"), at, "a valid value", problem)
    })?;
    Ok(meta)
}
