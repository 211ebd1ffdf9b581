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

/// Appends the coding of one 4096-byte page (panics on another size). RUNS when the run lengths
/// take fewer than 4096 bytes and at most 32 more than twice the page's mixed bytes (neither
/// 0x00 nor 0xff), else VERBATIM: a page of many short runs, where the lengths would cost zstd
/// more than the bits do, stays verbatim. Any choice reads back the same; this one is pinned by
/// the golden vectors.
///
/// A dense capture spent about half its time here, so the work is laid out for the processor:
/// the mixed bytes are counted by byte compares the compiler vectorizes; each word's edges,
/// `w ^ (w << 1 | carry)`, mark where runs start; only the words with edges are visited, each
/// giving two starts whether or not it has a second (a dense page's words hold one or two,
/// unpredictably, and a loop over them mispredicted its exit); the lengths are then written a
/// batch at a time, in a loop where no length waits for the one before.
pub fn encode_page(page: &[u8], out: &mut Vec<u8>) {
    let page: &[u8; PAGE_BYTES] = page.try_into().expect("a 4096-byte page");
    let mixed = mixed_bytes(page);
    let limit = (2 * mixed + 32).min(PAGE_BYTES - 1);
    if !encode_runs(page, mixed, limit, out) {
        out.push(VERBATIM);
        out.extend_from_slice(page);
    }
}

/// The page's bytes that are neither 0x00 nor 0xff: roughly what zstd must store of a verbatim
/// page as literals, while the long 0x00 and 0xff stretches cost it little.
fn mixed_bytes(page: &[u8; PAGE_BYTES]) -> usize {
    // Byte counters for the vectorizer, summed before they could wrap.
    let uniform: usize = page
        .chunks_exact(128)
        .map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b.wrapping_add(1) < 2))))
        .sum();
    PAGE_BYTES - uniform
}

/// The mixed bytes of a word whose edges are `t`: those with an edge inside.
#[inline(always)]
fn mixed_in(t: u64) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let inside = t & 0xfefe_fefe_fefe_fefe;
    // A 1 in each byte of `inside` that is not zero, then their sum, in the top byte.
    let nonzero = (((inside & LOW7) + LOW7) | inside) >> 7 & 0x0101_0101_0101_0101;
    usize::from(nonzero.wrapping_mul(0x0101_0101_0101_0101).to_be_bytes()[0])
}

/// One run length (below 2^21) as LEB128 in the low 3 bytes, computed without a branch (dense
/// bitmaps mix 1- and 2-byte lengths unpredictably), and its size in bytes in the top byte.
#[inline(always)]
fn length_code(len: u32) -> u32 {
    let (more0, more1) = (u32::from(len > 0x7f), u32::from(len > 0x3fff));
    // The 7-bit groups moved to bytes 0, 1 and 2, then the continuation bits.
    let groups = len + (len & !0x7f) + 2 * (len & !0x3fff);
    groups | more0 << 7 | more1 << 15 | (1 + more0 + more1) << 24
}

// Below, an index taken modulo its array's size never wraps: the modulo only spares a bounds
// check in a loop that is run for every word or every run.

/// Run starts gathered before their lengths are written (a word adds at most 64 more).
const BATCH: usize = 256;
/// Room for a batch of starts.
const STARTS: usize = 512;
const _: () = assert!(BATCH + 64 < STARTS);

/// Appends RUNS and the page's run lengths; gives up (appending nothing) once they must take
/// more than `limit` bytes.
fn encode_runs(page: &[u8; PAGE_BYTES], mixed: usize, limit: usize, out: &mut Vec<u8>) -> bool {
    // Every run costs a byte, and each mixed byte holds the start of one: `spare` is what the
    // limit leaves beside the runs found so far and those the other mixed bytes must start.
    // A page with too many runs is settled without coding them all.
    let Some(mut spare) = limit.checked_sub(1 + mixed) else { return false };
    let word = |i: usize| u64::from_le_bytes(page[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    // Bit j of word i set where bit 64i+j differs from the bit before it (bit 0 from a zero):
    // where runs start, the first run of zeros excepted.
    let edges: [u64; 512] = std::array::from_fn(|i| {
        let w = word(i);
        let before = if i == 0 { 0 } else { word(i - 1) >> 63 };
        w ^ (w << 1 | before)
    });
    // The words that hold run starts, listed so that the walk below skips the others without
    // a branch per word (on a dense page about half the words hold one, unpredictably).
    let mut busy = [0u16; 512];
    let mut listed = 0;
    for (i, &t) in (0u16..).zip(&edges) {
        busy[listed % 512] = i; // `listed` <= i < 512
        listed += usize::from(t != 0);
    }
    let start = out.len();
    out.push(RUNS);
    // Run starts from index 1, after the start of the run whose length comes first (0 at first).
    let mut starts = [0u32; STARTS];
    let mut codes = [0u32; BATCH + 64];
    let mut k = 1;
    for &i in &busy[..listed] {
        let mut t = edges[usize::from(i) % 512];
        let first = 64 * u32::from(i);
        // Two run starts written whether or not there is a second one (then it lies past the
        // word and the next write replaces it): most busy words of a dense page hold one or
        // two, unpredictably, so counting them beats branching.
        starts[k % STARTS] = first + t.trailing_zeros();
        t &= t - 1;
        starts[(k + 1) % STARTS] = first + t.trailing_zeros();
        k += 1 + usize::from(t != 0);
        t &= t.wrapping_sub(1);
        if t != 0 {
            let k0 = k - 2;
            while t != 0 {
                starts[k % STARTS] = first + t.trailing_zeros();
                t &= t - 1;
                k += 1;
            }
            // Only the words with many starts are counted against the limit (then their
            // mixed bytes are no longer): the others cannot bring it much closer.
            let Some(left) = (spare + mixed_in(edges[usize::from(i) % 512])).checked_sub(k - k0) else {
                out.truncate(start);
                return false;
            };
            spare = left;
        }
        if k >= BATCH {
            put_lengths(&starts[..k], &mut codes, out);
            starts[0] = starts[k - 1];
            k = 1;
        }
    }
    starts[k % STARTS] = PAGE_BITS;
    put_lengths(&starts[..=k], &mut codes, out);
    if out.len() - start - 1 > limit {
        out.truncate(start);
        return false;
    }
    true
}

/// Appends the lengths of the runs from each of `starts` to the next.
fn put_lengths(starts: &[u32], codes: &mut [u32; BATCH + 64], out: &mut Vec<u8>) {
    // The codes first, in a loop where no length waits for another (the compiler makes several
    // at once), then the stores, whose places depend on the sizes before them.
    let n = starts.len() - 1;
    for (c, (&to, &from)) in codes.iter_mut().zip(starts[1..].iter().zip(starts)) {
        *c = length_code(to - from);
    }
    // Each code is stored as 4 bytes, its size's among them, and the next one overwrites those
    // past its size.
    const ROOM: usize = 1024;
    const _: () = assert!(MAX_LENGTH_BYTES * (BATCH + 64) < ROOM);
    let mut buf = [0u8; ROOM + 4];
    let mut at = 0;
    for &c in &codes[..n] {
        buf[at % ROOM..][..4].copy_from_slice(&c.to_le_bytes());
        at += (c >> 24) as usize;
    }
    out.extend_from_slice(&buf[..at]);
}

/// Bit j set where byte j of `x` is 1 (each byte 0 or 1): the multiplication adds byte j,
/// moved up by 56 - 7j bits, into the top byte, and nothing below carries into it.
#[inline(always)]
fn pack_flags(x: u64) -> u64 {
    x.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit j set where byte `from + j` of `input` ends a run length (its top bit is clear), for the
/// 64 bytes from `from`; bytes past the end of `input` end none (they read as continuations).
#[inline(always)]
fn length_ends(input: &[u8], from: usize) -> u64 {
    match input.get(from..from + 64) {
        Some(bytes) => ends_in(bytes),
        None => ends_in_tail(input.get(from..).unwrap_or_default()),
    }
}

/// [`length_ends`] of 64 bytes.
#[inline(always)]
fn ends_in(bytes: &[u8]) -> u64 {
    bytes.chunks_exact(8).rev().fold(0, |ends, b| {
        let w = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        ends << 8 | pack_flags(!w >> 7 & 0x0101_0101_0101_0101)
    })
}

/// [`length_ends`] of the last bytes of a block, fewer than 64.
#[cold]
fn ends_in_tail(bytes: &[u8]) -> u64 {
    let mut w = [0x80u8; 64];
    w[..bytes.len()].copy_from_slice(bytes);
    ends_in(&w)
}

/// The run length of `k` bytes at `input[at..]`, whose last byte ends it: at most 3 bytes,
/// minimally encoded. No branch on its size (dense bitmaps mix 1- and 2-byte lengths
/// unpredictably).
#[inline(always)]
fn length_at(input: &[u8], at: usize, k: usize) -> Result<u32, &'static str> {
    if k > MAX_LENGTH_BYTES {
        return Err("a run length longer than 3 bytes");
    }
    let x = if at + 4 <= input.len() {
        u32::from_le_bytes(input[at..at + 4].try_into().expect("4 bytes"))
    } else {
        padded(&input[at..])
    };
    // By size: the bits a length holds, and the least that needs all its bytes (below it, the
    // last byte would be 0). Tables, not shifts: x86 shifts by a variable tie up a register.
    const BITS: [u32; 4] = [0, 0x7f, 0x3fff, 0x1f_ffff];
    const LEAST: [u32; 4] = [0, 0, 0x80, 0x4000];
    let n = (x & 0x7f | x >> 1 & 0x3f80 | x >> 2 & 0x1f_c000) & BITS[k];
    if n < LEAST[k] {
        return Err("a run length that is not minimally encoded");
    }
    Ok(n)
}

/// A block's last bytes, fewer than 4, padded to 4, as a little-endian number.
#[cold]
fn padded(b: &[u8]) -> u32 {
    let mut w = [0x80u8; 4];
    w[..b.len()].copy_from_slice(b);
    u32::from_le_bytes(w)
}

/// Runs decoded before they are written to the page.
const RUNS_AT_ONCE: usize = 256;

/// Decodes one RUNS payload at the start of `input` into `page`; returns the bytes it used.
///
/// The lengths are found from where they end, bytes with the top bit clear, 64 bytes at a time
/// into a mask: each length's size is then known without decoding the one before it (decoding
/// them in turn made a chain of dependent loads and arithmetic, about 10 cycles a run). They
/// are checked and turned into run starts, up to 256 at a time, then the runs are written to
/// the page: one loop doing both kept more values than there are registers, and waited every
/// run for those it had to keep in memory.
#[inline(never)] // Its loops then have the registers to themselves, the caller's values aside.
fn decode_runs(input: &[u8], page: &mut [u8; PAGE_BYTES]) -> Result<usize, String> {
    let mut starts = [0u32; RUNS_AT_ONCE + 1];
    let (mut used, mut at, mut fill, mut m) = (0usize, 0u32, 0u64, 0usize);
    let mut window = 0;
    loop {
        let mut ends = length_ends(input, window);
        while ends != 0 {
            let end = window + ends.trailing_zeros() as usize;
            ends &= ends - 1;
            let n = length_at(input, used, end + 1 - used).map_err(move |why| at_bit(why, at))?;
            // One test for both: a run past the page, or empty (which only the first may be).
            if n.wrapping_sub(1) >= PAGE_BITS - at && (n > 0 || used > 0) {
                return Err(bad_run(n, at));
            }
            starts[m % RUNS_AT_ONCE] = at; // m < RUNS_AT_ONCE
            m += 1;
            used = end + 1;
            at += n;
            if at == PAGE_BITS || m == RUNS_AT_ONCE {
                starts[m] = at;
                fill = paint(page, &starts, m, fill);
                if at == PAGE_BITS {
                    return Ok(used);
                }
                m = 0;
            }
        }
        // No length ends in the rest of the window.
        if window + 64 >= used + MAX_LENGTH_BYTES {
            // Bytes past the end of the block read as continuations.
            let why = if input.len() - used < MAX_LENGTH_BYTES {
                "the block ends inside a run length"
            } else {
                "a run length longer than 3 bytes"
            };
            return Err(at_bit(why, at));
        }
        window += 64;
    }
}

/// Writes to `page` the `m` runs from each of `starts` to the next, the first of value `fill`,
/// and returns the value of the run after them.
///
/// Each run sets the page from its first bit upward to its value: its first word keeps the
/// bits below, the next 4 words are stored whole, without asking how far the run reaches, and
/// the runs after it put right what lies past its end. A run of up to 257 bits needs nothing
/// more, so the dense bitmaps' short runs cost no branch on their length (a branch on whether
/// a run ends in its first word, and a fill of variable length, mispredicted most of the time
/// there). Every word is stored whole by the first run that reaches it, so what `page` held
/// does not matter.
///
/// The word a run starts in is kept in a register, not read back from the page: below the run
/// it holds what the runs before it in that word made of it, or, if the run is the first to
/// start in it, the value of the run before (reading back the word the previous run had just
/// stored made each run wait for that store).
#[inline(never)] // Inlined, it crowded the registers of the loop that decodes the lengths.
fn paint(page: &mut [u8; PAGE_BYTES], starts: &[u32; RUNS_AT_ONCE + 1], m: usize, mut fill: u64) -> u64 {
    const WORDS: usize = PAGE_BYTES / 8;
    let mut at_word = (starts[0] / 64) as usize % WORDS; // `at` < 32768
    let mut word = u64::from_le_bytes(page[8 * at_word..8 * at_word + 8].try_into().expect("8 bytes"));
    for j in 0..m.min(RUNS_AT_ONCE) {
        let (at, to) = (starts[j], starts[j + 1]);
        let i = (at / 64) as usize % WORDS;
        let below = (1u64 << (at % 64)) - 1;
        let before = if i == at_word { word } else { !fill };
        (word, at_word) = (before & below | fill & !below, i);
        page[8 * i..8 * i + 8].copy_from_slice(&word.to_le_bytes());
        // One test for both: the run ends within the 4 words after its first (at bit 63 of the
        // first at worst), and those are in the page (true of any run that ends by bit 32512).
        if to <= (at + 257).min(PAGE_BITS - 256) {
            for w in page[8 * i + 8..8 * i + 40].chunks_exact_mut(8) {
                w.copy_from_slice(&fill.to_le_bytes());
            }
        } else {
            // The words after the first that hold bits of the run (none for an empty one).
            let last = to.saturating_sub(1) as usize / 64;
            page[8 * i + 8..8 * last.max(i) + 8].fill(fill.to_le_bytes()[0]);
        }
        fill = !fill;
    }
    fill
}

// The errors are formatted apart, from values: a `format!` in the loop would take the address
// of the bit position, which then lives in memory, and each run would wait to read it back.

#[cold]
fn at_bit(why: &str, at: u32) -> String {
    format!("{why} at bit {at}")
}

#[cold]
fn bad_run(n: u32, at: u32) -> String {
    if n == 0 {
        at_bit("a run of length 0", at) + " (only the first run may be empty)"
    } else {
        format!("a run of {n} bits at bit {at} passes the page's {PAGE_BITS} bits")
    }
}

/// Decodes a block's coded pages (`coded`, its whole frame content) into `out`, exactly
/// `out.len() / 4096` pages back to back. Errors name the page within the block; after one,
/// what `out` holds is unspecified.
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
            RUNS => {
                let page = page.try_into().expect("a 4096-byte page");
                at += decode_runs(&coded[at..], page).map_err(|e| format!("page {n}: {e}"))?;
            }
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

    /// The lengths of a page's runs, zeros first, bit by bit.
    fn reference_lengths(page: &[u8]) -> Vec<u32> {
        let mut lengths = Vec::new();
        let (mut value, mut run) = (0u8, 0u32);
        for i in 0..32768 {
            if page[i / 8] >> (i % 8) & 1 != value {
                lengths.push(run);
                (run, value) = (0, value ^ 1);
            }
            run += 1;
        }
        lengths.push(run);
        lengths
    }

    /// RUNS and the lengths as LEB128, whatever their size.
    fn runs_payload(lengths: &[u32]) -> Vec<u8> {
        let mut bytes = vec![RUNS];
        for &n in lengths {
            let mut n = n;
            while n >= 0x80 {
                bytes.push(u8::try_from(n & 0x7f | 0x80).unwrap());
                n >>= 7;
            }
            bytes.push(u8::try_from(n).unwrap());
        }
        bytes
    }

    /// FORMAT.md 5.1 and this writer's choice, done the slow way.
    fn reference_encode(page: &[u8]) -> Vec<u8> {
        let runs = runs_payload(&reference_lengths(page));
        let mixed = page.iter().filter(|&&b| b != 0 && b != 0xff).count();
        if runs.len() - 1 <= (2 * mixed + 32).min(4095) {
            runs
        } else {
            [&[VERBATIM], page].concat()
        }
    }

    /// A page of runs of these lengths, zeros first; the last run goes on to the end.
    fn page_of_runs(lengths: impl IntoIterator<Item = usize>) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        let (mut at, mut one) = (0, false);
        for n in lengths {
            let end = (at + n).min(32768);
            if one {
                (at..end).for_each(|b| page[b / 8] |= 1 << (b % 8));
            }
            (at, one) = (end, !one);
            if at == 32768 {
                return page;
            }
        }
        if one {
            (at..32768).for_each(|b| page[b / 8] |= 1 << (b % 8));
        }
        page
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn coding_is_the_reference_coding_at_word_edges_and_many_starts_a_word() {
        let mut pages = Vec::new();
        // The same word everywhere, or every few words: run starts at bits 0 and 63 of words,
        // at word boundaries, 1 to 64 of them in a word.
        for pattern in [
            1u64 << 63 | 1,
            1 << 63,
            1,
            !1 >> 1,
            0xffff_ffff << 32,
            0x5555_5555_5555_5555,
            0x8421_8421_8421_8421,
        ] {
            for every in [1, 2, 3, 64, 511] {
                let mut page = vec![0u8; 4096];
                for w in (0..512).step_by(every) {
                    page[8 * w..8 * w + 8].copy_from_slice(&pattern.to_le_bytes());
                }
                pages.push(page.iter().map(|b| !b).collect());
                pages.push(page);
            }
        }
        // Runs of 1 to `max` bits: more starts than one batch, starts in every word, lengths
        // of 1, 2 and 3 bytes.
        for max in [2, 3, 8, 64, 65, 128, 129, 256, 257, 300, 16383, 16384, 20000] {
            pages.push(page_of_runs((0..).map(|i| 1 + i % max)));
            pages.push(page_of_runs((0..).map(|i| max - i % max)));
        }
        // Noise in part of a page: too many runs, seen early or late.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for (from, to) in [(0, 4096), (0, 512), (3584, 4096), (2000, 2100), (4088, 4096)] {
            let mut page = vec![0u8; 4096];
            page[from..to].iter_mut().for_each(|b| *b = xorshift(&mut s).to_le_bytes()[0]);
            pages.push(page);
        }
        for page in &pages {
            let coded = round_trip(page);
            assert!(coded == reference_encode(page), "{:02x?}", &page[..64]);
        }
        // The choice itself: mixed bytes each holding one run, with 1-byte lengths around
        // them, are worth coding (2 bytes of lengths each); with 4 runs in each, they are not.
        let mut page = vec![0u8; 4096];
        (0..4096).step_by(8).for_each(|i| page[i] = 0x0f);
        assert_eq!(round_trip(&page)[0], RUNS);
        (0..4096).step_by(8).for_each(|i| page[i] = 0x55);
        assert_eq!(round_trip(&page)[0], VERBATIM);
    }

    #[test]
    fn runs_are_decoded_past_batches_and_windows_and_to_the_page_end() {
        let mut out = vec![0u8; 4096];
        let mut pages = vec![[0x55u8; 4096].to_vec(), [0xaau8; 4096].to_vec()];
        for lengths in [
            vec![32512, 256],
            vec![32511, 1, 256],
            vec![32254, 258, 256],
            vec![0, 32000, 700, 68],
            vec![100, 300, 5000, 258, 257, 193, 194],
            // Runs past 4 words after their first, from every end of a word.
            vec![63, 321, 63, 384, 2, 383, 65, 322, 64, 400],
            (1..=300).collect(),
        ] {
            pages.push(page_of_runs(lengths));
        }
        for page in &pages {
            // Coded as runs whatever their number (the writer stores some of these verbatim),
            // into a page that held something else.
            out.fill(0x3c);
            decode_pages(&runs_payload(&reference_lengths(page)), &mut out).unwrap();
            assert!(out == *page, "{:02x?}", &page[..64]);
        }
        // A RUNS page followed by bytes that would not do as lengths: they are not read as its.
        let page = page_of_runs([3, 5]);
        for next in [[0x80u8; 4096], [0u8; 4096]] {
            let coded = [&runs_payload(&reference_lengths(&page))[..], &[VERBATIM], &next].concat();
            let mut out = vec![0u8; 8192];
            decode_pages(&coded, &mut out).unwrap();
            assert!(out[..4096] == page[..] && out[4096..] == next[..]);
        }
    }

    #[test]
    fn lengths_across_the_decoders_64_byte_windows_read_and_are_refused_alike() {
        let mut out = vec![0u8; 4096];
        // `p` runs of 1 bit put a length of 20000 (3 bytes), or a damaged one, at each place
        // around byte 64 of the payload (its tag is byte 0).
        for p in 58..=66u32 {
            let mut lengths = vec![1; p as usize];
            lengths.extend([20000, 32768 - 20000 - p]);
            let coded = runs_payload(&lengths);
            let mut want = vec![0u8; 4096];
            want[..].copy_from_slice(&page_of_runs(lengths.iter().map(|&n| n as usize)));
            decode_pages(&coded, &mut out).unwrap();
            assert!(out == want, "p {p}");
            let at = |tail: &[u8]| [&coded[..=p as usize], tail].concat();
            let cases: [(Vec<u8>, &str); 9] = [
                (at(&[0x80, 0x80, 0x80, 0x01]), "a run length longer than 3 bytes"),
                (at(&[0x80, 0x80, 0x80]), "a run length longer than 3 bytes"),
                (at(&[0x80, 0x80]), "the block ends inside a run length"),
                (at(&[0x80, 0x80, 0x00]), "a run length that is not minimally encoded"),
                (at(&[0xff, 0x00, 0x01]), "a run length that is not minimally encoded"),
                (at(&[0xff, 0xff, 0x00, 0x01]), "a run length that is not minimally encoded"),
                (at(&[0x00, 0x01]), "a run of length 0"),
                (at(&[0xff, 0xff, 0x01]), "a run of 32767 bits"),
                (at(&[0x80, 0x80, 0x7f]), "a run of 2080768 bits"),
            ];
            for (coded, why) in cases {
                let err = decode_pages(&coded, &mut out).unwrap_err();
                assert!(err.starts_with(&format!("page 0: {why} at bit {p}")), "p {p}: {err}");
            }
        }
    }
}
