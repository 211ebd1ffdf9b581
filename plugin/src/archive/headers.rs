//! The header blocks in front of one tar member read a second time, the way GNU tar reads them,
//! so that the archive has one reading: the tar crate's (which the walk uses) and this one must
//! agree on the member's name, link target and size, and nothing may be said twice.
//!
//! GNU tar applies pax records in order (a second `path=` wins), the tar crate takes the first;
//! the crate prefers a GNU long name to a pax `path`, and stops at an empty pax line; it strips
//! one trailing NUL from a long name where GNU tar ends it at the first. Each such difference
//! is a way to show a preflight one file and a restore another: refused here.

use std::collections::HashSet;

/// One tar block.
pub const BLOCK: usize = 512;

/// The member as GNU tar reads its headers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GnuReading {
    /// The member's name: pax `path`, else the GNU long name, else the header's (with the ustar
    /// prefix).
    pub name: Vec<u8>,
    /// The link target: pax `linkpath`, else the GNU long link, else the header's.
    pub link: Vec<u8>,
    /// The data size: pax `size`, else the header's.
    pub size: u64,
    /// The member header's type flag.
    pub type_flag: u8,
}

/// A header chain (extension headers and the member's header, as read from the archive after
/// the previous member's padding) read as GNU tar reads it; an error says what is ambiguous.
pub fn read_chain(bytes: &[u8]) -> Result<GnuReading, String> {
    let mut at = 0;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let mut pax: Option<Vec<PaxRecord>> = None;
    loop {
        let block = bytes.get(at..at + BLOCK).ok_or("the headers end inside a header block")?;
        let size = number(&block[124..136]).ok_or("a size field that is not a number")?;
        let type_flag = block[156];
        let body_at = at + BLOCK;
        let body = || -> Result<&[u8], String> {
            let end = usize::try_from(size).ok().and_then(|s| body_at.checked_add(s));
            end.and_then(|end| bytes.get(body_at..end))
                .ok_or_else(|| "an extension header longer than its data".into())
        };
        let padded = usize::try_from(size).unwrap_or(usize::MAX).div_ceil(BLOCK).saturating_mul(BLOCK);
        match type_flag {
            b'L' | b'K' | b'x' => {
                let body = body()?;
                let (slot, what) = match type_flag {
                    b'L' => (&mut long_name, "GNU long names"),
                    b'K' => (&mut long_link, "GNU long link names"),
                    _ => {
                        if pax.is_some() {
                            return Err("two pax headers".into());
                        }
                        pax = Some(pax_records(body)?);
                        at = body_at.saturating_add(padded);
                        continue;
                    }
                };
                if slot.is_some() {
                    return Err(format!("two {what}"));
                }
                *slot = Some(until_nul(body).to_vec());
                at = body_at.saturating_add(padded);
            }
            _ => {
                let pax = pax.unwrap_or_default();
                if long_name.is_some() && bytes_of(&pax, "path").is_some() {
                    return Err("a GNU long name and a pax path both name it".into());
                }
                if long_link.is_some() && bytes_of(&pax, "linkpath").is_some() {
                    return Err("a GNU long link name and a pax linkpath both give its target".into());
                }
                let mut r = GnuReading {
                    name: long_name.unwrap_or_else(|| header_name(block)),
                    link: long_link.unwrap_or_else(|| until_nul(&block[157..257]).to_vec()),
                    size,
                    type_flag,
                };
                for rec in &pax {
                    match rec.key.as_str() {
                        "path" => r.name = rec.value.clone(),
                        "linkpath" => r.link = rec.value.clone(),
                        "size" => {
                            r.size = decimal(&rec.value).ok_or("a pax size that is not a decimal number")?
                        }
                        k if k.starts_with("GNU.sparse.") => {
                            return Err(format!("a pax record {k}: a sparse file"))
                        }
                        _ => {}
                    }
                }
                return Ok(r);
            }
        }
    }
}

/// A pax record, `LEN KEY=VALUE\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaxRecord {
    /// The key.
    pub key: String,
    /// The value (may hold any byte but the record's length decides where it ends).
    pub value: Vec<u8>,
}

/// Reads a pax header's records strictly: each `LEN KEY=VALUE\n` with LEN its exact length in
/// decimal; no key twice (GNU tar and Python's tarfile take the last, the tar crate the first).
pub fn pax_records(mut body: &[u8]) -> Result<Vec<PaxRecord>, String> {
    let mut out = Vec::new();
    let mut keys = HashSet::new();
    while !body.is_empty() {
        let sp = body.iter().position(|&b| b == b' ').ok_or("a pax record without a length")?;
        let len = std::str::from_utf8(&body[..sp])
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or("a pax record whose length is not a decimal number")?;
        let record = body
            .get(..len)
            .filter(|r| len > sp + 1 && r.ends_with(b"\n"))
            .ok_or_else(|| format!("a pax record of length {len} that does not end where its length says"))?;
        let kv = &record[sp + 1..len - 1];
        let eq = kv.iter().position(|&b| b == b'=').ok_or("a pax record without `=`")?;
        let key = std::str::from_utf8(&kv[..eq])
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or("a pax record whose key is empty or not UTF-8")?
            .to_string();
        if !keys.insert(key.clone()) {
            return Err(format!("two pax records for `{key}`"));
        }
        out.push(PaxRecord { key, value: kv[eq + 1..].to_vec() });
        body = &body[len..];
    }
    Ok(out)
}

fn bytes_of<'a>(pax: &'a [PaxRecord], key: &str) -> Option<&'a [u8]> {
    pax.iter().find(|r| r.key == key).map(|r| r.value.as_slice())
}

fn until_nul(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// The header's own name: `prefix/name` in a POSIX ustar header, `name` otherwise (a GNU
/// header keeps other fields where ustar has its prefix).
fn header_name(block: &[u8]) -> Vec<u8> {
    let name = until_nul(&block[..100]);
    let prefix = until_nul(&block[345..500]);
    if &block[257..265] == b"ustar\x0000" && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

fn decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// A numeric header field: octal (spaces and NULs around it), or base-256 when its first bit
/// is set (GNU).
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(field).ok()?.trim_matches(|c| c == ' ' || c == '\0');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: u64, flag: u8) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(flag));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn body(b: &[u8]) -> Vec<u8> {
        let mut v = b.to_vec();
        v.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
        v
    }

    fn pax(records: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            out.extend(format!("{len}{rest}").as_bytes());
        }
        out
    }

    #[test]
    fn pax_records_are_read_strictly() {
        let r = pax_records(&pax(&[("path", "checkpoint/cet-1.img"), ("mtime", "1")])).unwrap();
        assert_eq!(r[0].value, b"checkpoint/cet-1.img");
        let twice = pax(&[("path", "checkpoint/notes.txt"), ("path", "checkpoint/cet-1.img")]);
        assert!(pax_records(&twice).unwrap_err().contains("two pax records for `path`"));
        assert!(pax_records(b"8 path=a\n").is_err(), "length one short");
        assert!(pax_records(b"10 path=a\n\n").is_err(), "an empty line after a record");
        // A value holding a newline is one record to GNU tar (its length decides).
        assert_eq!(pax_records(b"12 path=a\nb\n").unwrap()[0].value, b"a\nb");
    }

    #[test]
    fn a_chain_reads_as_gnu_tar_reads_it() {
        let long = "d/".repeat(80) + "cet-1.img";
        let mut chain = header("././@LongLink", long.len() as u64 + 1, b'L');
        chain.extend(body(format!("{long}\0").as_bytes()));
        chain.extend(header("short", 5, b'0'));
        let r = read_chain(&chain).unwrap();
        assert_eq!((r.name, r.size, r.type_flag), (long.clone().into_bytes(), 5, b'0'));

        let mut both = header("././@LongLink", long.len() as u64 + 1, b'L');
        both.extend(body(format!("{long}\0").as_bytes()));
        let p = pax(&[("path", "other")]);
        both.extend(header("x", p.len() as u64, b'x'));
        both.extend(body(&p));
        both.extend(header("short", 5, b'0'));
        assert!(read_chain(&both).unwrap_err().contains("GNU long name and a pax path"));

        let p = pax(&[("GNU.sparse.size", "1")]);
        let mut sparse = header("x", p.len() as u64, b'x');
        sparse.extend(body(&p));
        sparse.extend(header("f", 5, b'0'));
        assert!(read_chain(&sparse).unwrap_err().contains("sparse"));
    }
}
