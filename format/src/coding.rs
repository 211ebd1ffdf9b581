//! Page coding (format 1.1, incompat flag PAGE_CODING; docs/FORMAT.md section 5.1): inside a
//! block, each data page is a tag byte followed either by its bit runs or by its 4096 bytes.
//!
//! A legacy bitmap marks whole code mappings, so its bits come in long runs; writing the run
//! lengths instead of the bits makes the bytes zstd has to compress (and to inflate on restore)
//! about ten times fewer on a dense bitmap, which is where the time of a dense capture went.

use crate::addr::PAGE_BYTES;

/// The page's 4096 bytes follow.
pub const VERBATIM: u8 = 0;
/// The lengths of the page's runs of equal bits follow (zeros first), as unsigned LEB128.
pub const RUNS: u8 = 1;
/// Bits in one bitmap page.
pub const PAGE_BITS: u32 = 8 * 4096;
const _: () = assert!(PAGE_BITS as usize == 8 * PAGE_BYTES);
/// Most bytes one coded page takes: a tag and 4096 bytes.
pub const MAX_CODED_PAGE: usize = 1 + PAGE_BYTES;
/// Most bytes of one run length: 32768 needs 3 LEB128 bytes.
const MAX_LENGTH_BYTES: usize = 3;

/// Appends the coding of one 4096-byte page. RUNS when the run lengths take fewer than 4096
/// bytes and at most 32 more than twice the page's mixed bytes (neither 0x00 nor 0xff), else
/// VERBATIM: a page of many short runs, where the lengths would cost zstd more than the bits do,
/// stays verbatim. Any choice reads back the same; this one is pinned by the golden vectors.
pub fn encode_page(page: &[u8], out: &mut Vec<u8>) {
    debug_assert_eq!(page.len(), PAGE_BYTES);
    let (runs, mixed) = census(page);
    let limit = (2 * mixed + 32).min(PAGE_BYTES - 1);
    // Every run costs at least one byte: a page with too many runs is settled without coding it.
    if runs > limit || !encode_runs(page, limit, out) {
        out.push(VERBATIM);
        out.extend_from_slice(page);
    }
}

fn words(page: &[u8]) -> impl Iterator<Item = u64> + '_ {
    page.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
}

/// One pass over a page: its runs of equal bits (counting an empty first run of zeros, as the
/// coding does) and its mixed bytes (neither 0x00 nor 0xff: roughly what zstd must store of a
/// verbatim page as literals, while the long 0x00 and 0xff stretches cost it little).
fn census(page: &[u8]) -> (usize, usize) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // The top bit of each byte of `w` that is zero, nothing else.
    let zero_bytes = |w: u64| !(((w & LOW7) + LOW7) | w | LOW7);
    let (mut carry, mut changes, mut uniform) = (0u64, 0u32, 0u32);
    for w in words(page) {
        changes += (w ^ (w << 1 | carry)).count_ones();
        carry = w >> 63;
        uniform += (zero_bytes(w) | zero_bytes(!w)).count_ones();
    }
    (changes as usize + 1, PAGE_BYTES - uniform as usize)
}

/// Writes one run length (below 2^21) at `buf[n..]`, touching 3 bytes whatever its size, without
/// a branch (dense bitmaps mix 1- and 2-byte lengths unpredictably); returns the new end.
#[inline(always)]
fn put_length(buf: &mut [u8], n: usize, len: u32) -> usize {
    let (more0, more1) = (u8::from(len >= 0x80), u8::from(len >= 0x4000));
    buf[n] = (len & 0x7f) as u8 | more0 << 7;
    buf[n + 1] = (len >> 7 & 0x7f) as u8 | more1 << 7;
    buf[n + 2] = (len >> 14 & 0x7f) as u8;
    n + 1 + usize::from(more0) + usize::from(more1)
}

/// Appends RUNS and the page's run lengths; gives up (appending nothing) past `limit` bytes.
fn encode_runs(page: &[u8], limit: usize, out: &mut Vec<u8>) -> bool {
    // One word adds at most 64 lengths of 3 bytes, and `put_length` touches 3 bytes: checking
    // after each word keeps within this.
    let mut buf = [0u8; PAGE_BYTES + 65 * MAX_LENGTH_BYTES];
    let mut n = 0;
    // All zeros while in a run of zeros, all ones in a run of ones: `word ^ fill` has a bit set
    // wherever the current run ends.
    let mut fill = 0u64;
    let mut run_start = 0u32;
    for (i, word) in (0u32..).zip(words(page)) {
        let mut ends = word ^ fill;
        while ends != 0 {
            let bit = ends.trailing_zeros();
            let at = i * 64 + bit;
            n = put_length(&mut buf, n, at - run_start);
            run_start = at;
            fill = !fill;
            ends = (word ^ fill) & (!0u64 << bit);
        }
        if n > limit {
            return false;
        }
    }
    n = put_length(&mut buf, n, PAGE_BITS - run_start);
    if n > limit {
        return false;
    }
    out.push(RUNS);
    out.extend_from_slice(&buf[..n]);
    true
}

/// One run length at the start of `b`: (length, bytes used). At most 3 bytes, minimally
/// encoded. Computed without a branch on the length's size (dense bitmaps mix 1- and 2-byte
/// lengths unpredictably); bytes past the end of `b` read as continuation bytes, so a length
/// that needs them is refused as cut short.
#[inline(always)]
fn length_at(b: &[u8]) -> Result<(u32, usize), &'static str> {
    let (have, [b0, b1, b2]) = match b.get(..MAX_LENGTH_BYTES) {
        Some(&[b0, b1, b2]) => (MAX_LENGTH_BYTES, [b0, b1, b2]),
        _ => padded(b),
    };
    let (more0, more1) = (u32::from(b0 >> 7), u32::from(b0 >> 7 & b1 >> 7));
    let n = u32::from(b0 & 0x7f) | (more0 * u32::from(b1 & 0x7f)) << 7 | (more1 * u32::from(b2)) << 14;
    let k = (1 + more0 + more1) as usize;
    let last = [b0, b1, b2][k - 1];
    if last >= 0x80 {
        // A padding byte is a continuation byte: a length that reaches one was cut short.
        Err(if k > have { "the block ends inside a run length" } else { "a run length longer than 3 bytes" })
    } else if k > 1 && last == 0 {
        Err("a run length that is not minimally encoded")
    } else {
        Ok((n, k))
    }
}

/// The last bytes of a block, fewer than 3, padded with continuation bytes.
#[cold]
fn padded(b: &[u8]) -> (usize, [u8; MAX_LENGTH_BYTES]) {
    let mut w = [0x80u8; MAX_LENGTH_BYTES];
    w[..b.len()].copy_from_slice(b);
    (b.len(), w)
}

/// Sets bits `[from, to)` of a page held as 512 little-endian words; `from < to`.
fn set_bits(words: &mut [u64; 512], from: u32, to: u32) {
    let (first, last) = ((from / 64) as usize, ((to - 1) / 64) as usize);
    let head = !0u64 << (from % 64);
    let tail = !0u64 >> (63 - (to - 1) % 64);
    if first == last {
        words[first] |= head & tail;
    } else {
        words[first] |= head;
        words[first + 1..last].fill(!0);
        words[last] |= tail;
    }
}

/// Decodes one RUNS payload at the start of `input` into `page`; returns the bytes it used.
fn decode_runs(input: &[u8], page: &mut [u8]) -> Result<usize, String> {
    let mut words = [0u64; 512];
    let (mut used, mut at, mut ones) = (0usize, 0u32, false);
    while at < PAGE_BITS {
        let (n, k) = length_at(&input[used..]).map_err(|e| format!("{e} at bit {at}"))?;
        if n == 0 && used > 0 {
            return Err(format!("a run of length 0 at bit {at} (only the first run may be empty)"));
        }
        if n > PAGE_BITS - at {
            return Err(format!("a run of {n} bits at bit {at} passes the page's {PAGE_BITS} bits"));
        }
        used += k;
        if ones {
            set_bits(&mut words, at, at + n);
        }
        at += n;
        ones = !ones;
    }
    for (dst, w) in page.chunks_exact_mut(8).zip(&words) {
        dst.copy_from_slice(&w.to_le_bytes());
    }
    Ok(used)
}

/// Decodes a block's coded pages (`coded`, its whole frame content) into `out`, exactly
/// `out.len() / 4096` pages back to back. Errors name the page within the block.
pub fn decode_pages(coded: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0usize;
    for (n, page) in out.chunks_exact_mut(PAGE_BYTES).enumerate() {
        let tag = *coded.get(at).ok_or_else(|| format!("page {n}: the block ends before it"))?;
        at += 1;
        match tag {
            VERBATIM => {
                let bytes = coded
                    .get(at..at + PAGE_BYTES)
                    .ok_or_else(|| format!("page {n}: the block ends inside its 4096 bytes"))?;
                page.copy_from_slice(bytes);
                at += PAGE_BYTES;
            }
            RUNS => at += decode_runs(&coded[at..], page).map_err(|e| format!("page {n}: {e}"))?,
            t => return Err(format!("page {n}: tag {t}, expected 0 (verbatim) or 1 (runs)")),
        }
    }
    match coded.len() - at {
        0 => Ok(()),
        extra => Err(format!("{extra} bytes after the block's last page")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(page: &[u8]) -> Vec<u8> {
        let mut coded = Vec::new();
        encode_page(page, &mut coded);
        let mut back = vec![0u8; 4096];
        decode_pages(&coded, &mut back).unwrap();
        assert_eq!(back, page);
        coded
    }

    #[test]
    fn runs_for_marked_ranges_verbatim_for_alternating_bits() {
        let mut page = vec![0u8; 4096];
        page[0] = 0b0000_0110; // bits 1, 2
        page[4095] = 0x80; // bit 32767
        assert_eq!(round_trip(&page), [RUNS, 1, 2, 0xfc, 0xff, 0x01, 1]);
        // Starting with a one: the first run (zeros) is empty.
        let mut page = vec![0xffu8; 4096];
        page[8] = 0;
        assert_eq!(round_trip(&page), [RUNS, 0, 64, 8, 0xb8, 0xff, 0x01]);
        // Every other bit: 32768 runs would take more than 4096 bytes.
        let coded = round_trip(&[0x55u8; 4096]);
        assert_eq!((coded[0], coded.len()), (VERBATIM, 4097));
        // Word boundaries and every single bit position.
        for bit in [0u32, 1, 63, 64, 127, 4095, 32766, 32767] {
            let mut page = vec![0u8; 4096];
            page[(bit / 8) as usize] |= 1 << (bit % 8);
            round_trip(&page);
            let mut page = vec![0xffu8; 4096];
            page[(bit / 8) as usize] &= !(1 << (bit % 8));
            round_trip(&page);
        }
    }

    #[test]
    fn pseudo_random_run_lengths_round_trip() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for max_run in [1u64, 2, 7, 64, 300, 5000] {
            let mut page = vec![0u8; 4096];
            let (mut bit, mut one) = (0u64, s & 1 == 0);
            while bit < 32768 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let n = (1 + s % max_run).min(32768 - bit);
                if one {
                    (bit..bit + n).for_each(|b| page[(b / 8) as usize] |= 1 << (b % 8));
                }
                bit += n;
                one = !one;
            }
            round_trip(&page);
        }
    }

    #[test]
    fn damaged_codings_are_refused_with_the_page_and_the_problem() {
        let mut out = vec![0u8; 8192];
        let cases: [(&[u8], &str); 8] = [
            (&[], "page 0: the block ends before it"),
            (&[7], "page 0: tag 7"),
            (&[RUNS, 0x80, 0x80, 0x80, 0x01], "longer than 3 bytes"),
            (&[RUNS, 0x80, 0x00], "not minimally encoded"),
            (&[RUNS, 0x80], "the block ends inside a run length"),
            (&[RUNS, 5, 0], "a run of length 0 at bit 5"),
            (&[RUNS, 0x81, 0x80, 0x02], "passes the page's 32768 bits"),
            (&[VERBATIM, 1, 2], "ends inside its 4096 bytes"),
        ];
        for (coded, want) in cases {
            let err = decode_pages(coded, &mut out[..4096]).unwrap_err();
            assert!(err.contains(want), "{coded:?}: {err}");
        }
        // A whole page, then too little for the second; and bytes after the last page.
        let page = [RUNS, 0x80, 0x80, 0x02];
        assert!(decode_pages(&page, &mut out).unwrap_err().starts_with("page 1:"));
        let extra = [RUNS, 0x80, 0x80, 0x02, 9];
        assert_eq!(
            decode_pages(&extra, &mut out[..4096]).unwrap_err(),
            "1 bytes after the block's last page"
        );
    }
}
