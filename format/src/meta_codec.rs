//! META section bytes: bincode 2 in its legacy (bincode 1) layout, with an allocation limit.
//! docs/FORMAT.md section 3 spells these bytes out, so no reader needs bincode.

use crate::error::FormatError;
use crate::layout::MAX_META_LEN;
use crate::meta::{BitmapMapping, Metadata, NamespaceIds, ProcessInfo, SourceHost};
use bincode::config::{self, Configuration, Fixint, Limit, LittleEndian};

type Legacy = Configuration<LittleEndian, Fixint, Limit<{ crate::addr::usize_from(MAX_META_LEN) }>>;

fn config() -> Legacy {
    config::legacy().with_limit::<{ crate::addr::usize_from(MAX_META_LEN) }>()
}

/// The fields of 1.0 and 1.1, in their order; 1.2 appends `namespace`, 1.3 `criu_run_id`.
type Base = (SourceHost, ProcessInfo, Option<BitmapMapping>);

pub fn encode(meta: &Metadata) -> Result<Vec<u8>, FormatError> {
    let fail =
        |e: bincode::error::EncodeError| FormatError::Input(format!("metadata does not serialize: {e}"));
    let mut bytes =
        bincode::serde::encode_to_vec((&meta.host, &meta.process, &meta.bitmap), config()).map_err(fail)?;
    bytes.extend(bincode::serde::encode_to_vec(&meta.namespace, config()).map_err(fail)?);
    bytes.extend(bincode::serde::encode_to_vec(&meta.criu_run_id, config()).map_err(fail)?);
    if bytes.len() as u64 > MAX_META_LEN {
        return Err(FormatError::Input(format!(
            "metadata is {} bytes, more than the {MAX_META_LEN}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes META of a file of minor version `minor`: the fields of 1.0, then `namespace` when
/// `minor` is 2 or more, then `criu_run_id` when it is 3 or more. Trailing bytes are fields a newer minor version appended: allowed only
/// when the file's minor version is newer than this reader's.
pub fn decode(bytes: &[u8], offset: u64, minor: u16) -> Result<Metadata, FormatError> {
    let bad = |e: bincode::error::DecodeError| {
        FormatError::invalid("metadata", offset, "metadata as in FORMAT.md section 3", e.to_string())
    };
    let ((host, process, bitmap), mut used): (Base, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(bad)?;
    let mut namespace = None;
    if minor >= 2 {
        let (ns, n): (Option<NamespaceIds>, usize) =
            bincode::serde::decode_from_slice(&bytes[used..], config()).map_err(bad)?;
        namespace = ns;
        used += n;
    }
    let mut criu_run_id = None;
    if minor >= 3 {
        let (id, n): (Option<String>, usize) =
            bincode::serde::decode_from_slice(&bytes[used..], config()).map_err(bad)?;
        criu_run_id = id;
        used += n;
    }
    let meta = Metadata { host, process, bitmap, namespace, criu_run_id };
    if used != bytes.len() && minor <= crate::layout::MINOR {
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
