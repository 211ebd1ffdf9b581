//! Editing encoded images by hand: replace a section's content, recompute every checksum. For the
//! tests that forge hostile images (a structural rule, not a CRC, must be what rejects them).
//! Compiled only with the `forge` cargo feature, which the test builds enable: nothing that
//! ships can forge an image.

use crate::addr::usize_from;
use crate::error::FormatError;
use crate::layout::{crc, Footer, SectionEntry, FOOTER_SIZE, HEADER_SIZE, MAX_SECTIONS, SECTION_ENTRY_SIZE};

/// The section table the footer of `b` locates, as `(table_offset, entries)`: refused unless the
/// footer names at most [`MAX_SECTIONS`] entries that end exactly where the footer starts, each
/// section lying before the table.
fn table(b: &[u8]) -> Result<(usize, Vec<SectionEntry>), FormatError> {
    let n = b.len();
    let footer_at =
        n.checked_sub(FOOTER_SIZE).filter(|&f| f >= HEADER_SIZE).ok_or(FormatError::Truncated {
            what: "header and footer",
            offset: 0,
            needed: (HEADER_SIZE + FOOTER_SIZE) as u64,
            file_len: n as u64,
        })?;
    let footer =
        |expected: String, found: String| FormatError::invalid("footer", footer_at as u64, expected, found);
    let table_offset = u64::from_le_bytes(b[footer_at + 8..footer_at + 16].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(b[footer_at + 16..footer_at + 20].try_into().expect("4 bytes"));
    if count > MAX_SECTIONS {
        return Err(footer(format!("at most {MAX_SECTIONS} sections"), count.to_string()));
    }
    let count = count as usize;
    let table_offset = usize::try_from(table_offset)
        .ok()
        .filter(|&t| t.checked_add(count * SECTION_ENTRY_SIZE) == Some(footer_at))
        .ok_or_else(|| {
            footer(format!("a table of {count} entries ending at {footer_at}"), table_offset.to_string())
        })?;
    let entries = (0..count)
        .map(|i| {
            let at = table_offset + SECTION_ENTRY_SIZE * i;
            let e = SectionEntry::decode(&b[at..at + SECTION_ENTRY_SIZE]);
            let inside = e.offset.checked_add(e.length).is_some_and(|end| end <= table_offset as u64);
            if inside {
                Ok(e)
            } else {
                Err(FormatError::invalid(
                    format!("section {i}"),
                    at as u64,
                    format!("before the table at {table_offset}"),
                    format!("{}+{}", e.offset, e.length),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((table_offset, entries))
}

/// Writes `entries` as the table at `table_offset` and the footer after it, every checksum (the
/// header's, each section's, the footer's) recomputed.
fn seal(b: &mut [u8], table_offset: usize, entries: &[SectionEntry]) {
    let c = crc(&b[..60]);
    b[60..64].copy_from_slice(&c.to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        // `table` checked every entry lies inside the file.
        let (start, end) = (usize_from(e.offset), usize_from(e.offset + e.length));
        let e = SectionEntry { crc: crc(&b[start..end]), ..*e };
        let at = table_offset + SECTION_ENTRY_SIZE * i;
        b[at..at + SECTION_ENTRY_SIZE].copy_from_slice(&e.encode());
    }
    let count = u32::try_from(entries.len()).expect("at most MAX_SECTIONS");
    let footer = Footer { table_offset: table_offset as u64, section_count: count };
    let n = b.len();
    let f = footer.encode(&b[table_offset..n - FOOTER_SIZE]);
    b[n - FOOTER_SIZE..].copy_from_slice(&f);
}

/// Recomputes every checksum of an image edited by hand: the header's, each section's (from the
/// section table) and the footer's. Refuses bytes whose footer does not locate a section table of
/// sections inside the file.
pub fn reseal(b: &mut [u8]) -> Result<(), FormatError> {
    let (table_offset, entries) = table(b)?;
    seal(b, table_offset, &entries);
    Ok(())
}

/// Where the first section of kind `kind` lies in encoded image `b`, as `(offset, length)`, read
/// from the section table the footer locates (no checksum is checked); `None` when the footer or
/// the table is not readable or has no such section.
pub fn find_section(b: &[u8], kind: u32) -> Option<(usize, usize)> {
    let (_, entries) = table(b).ok()?;
    let e = entries.into_iter().find(|e| e.kind == kind)?;
    Some((usize_from(e.offset), usize_from(e.length)))
}

/// `b` with the content of the first section of kind `kind` replaced by `content`: the sections
/// after it and the section table move with it, and every checksum is resealed. Refuses an image
/// whose footer does not locate a table of at most [`MAX_SECTIONS`] sections inside the file.
pub fn splice(b: &[u8], kind: u32, content: &[u8]) -> Result<Vec<u8>, FormatError> {
    let (table_offset, mut entries) = table(b)?;
    let i = entries.iter().position(|e| e.kind == kind).ok_or_else(|| {
        FormatError::invalid(
            "section table",
            table_offset as u64,
            format!("a section of kind {kind}"),
            "none",
        )
    })?;
    let (off, len) = (usize_from(entries[i].offset), usize_from(entries[i].length));
    if let Some(j) =
        entries.iter().position(|e| usize_from(e.offset) > off && usize_from(e.offset) < off + len)
    {
        let at = (table_offset + SECTION_ENTRY_SIZE * j) as u64;
        let expected = format!("a section starting outside section {i} ({off}+{len})");
        return Err(FormatError::invalid(
            format!("section {j}"),
            at,
            expected,
            entries[j].offset.to_string(),
        ));
    }
    let mut out = [&b[..off], content, &b[off + len..]].concat();
    // Everything after the replaced content (at or past its end) moves by the difference in length.
    let moved = |at: u64| at + content.len() as u64 - len as u64;
    for (j, e) in entries.iter_mut().enumerate() {
        if j == i {
            e.length = content.len() as u64;
        } else if usize_from(e.offset) > off {
            e.offset = moved(e.offset);
        }
    }
    let table_offset = usize_from(moved(table_offset as u64));
    seal(&mut out, table_offset, &entries);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal image shape: header, one section, table, footer (no valid content: only the
    /// structure the forging helpers read).
    fn shape(section_count_in_footer: u32) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE];
        b.extend_from_slice(b"section!");
        let table_offset = b.len();
        let e = SectionEntry { kind: 1, flags: 0, offset: HEADER_SIZE as u64, length: 8, crc: 0 };
        b.extend_from_slice(&e.encode());
        let footer = Footer { table_offset: table_offset as u64, section_count: section_count_in_footer };
        let f = footer.encode(&[]);
        b.extend_from_slice(&f);
        b
    }

    #[test]
    fn splice_moves_the_table_and_reseals() {
        let b = shape(1);
        let out = splice(&b, 1, b"a longer section").unwrap();
        assert_eq!(find_section(&out, 1), Some((HEADER_SIZE, 16)));
        assert_eq!(&out[HEADER_SIZE..HEADER_SIZE + 16], b"a longer section");
    }

    #[test]
    fn splice_refuses_a_footer_naming_more_sections_than_the_format_allows() {
        // A count past MAX_SECTIONS is refused before anything is read from it.
        let b = shape(u32::MAX);
        let e = splice(&b, 1, b"x").unwrap_err().to_string();
        assert!(e.contains("at most 64 sections") && e.contains("4294967295"), "{e}");
        assert!(find_section(&b, 1).is_none());
        // A count within the bound that does not fit the file is refused too.
        let e = splice(&shape(2), 1, b"x").unwrap_err().to_string();
        assert!(e.contains("a table of 2 entries"), "{e}");
    }
}
