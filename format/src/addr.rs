//! Address arithmetic of the IBT legacy code bitmap.
//!
//! One bit per 4 KiB page of linear address space: the byte for code address `a` is at bitmap
//! offset `a >> 15`, its bit is `(a >> 12) & 7`, least-significant bit first. So one 4 KiB page of
//! the bitmap covers `4096 * 8` code pages, 128 MiB of address space.

/// Size of a page, both of code and of the bitmap.
pub const PAGE_SIZE: u64 = 4096;
/// The same, as a length in memory.
pub const PAGE_BYTES: usize = 4096;
const _: () = assert!(PAGE_BYTES as u64 == PAGE_SIZE);

// criu-cet is built for x86-64 only, where usize is 64 bits wide: every u64 fits in one.
const _: () = assert!(usize::BITS == u64::BITS);

/// `x` as a length or index in memory: lossless, usize being as wide as u64 (asserted at
/// compile time above). Whether such a length is sane is for the caller to check first.
#[allow(clippy::cast_possible_truncation)]
pub const fn usize_from(x: u64) -> usize {
    x as usize
}
/// Code address space covered by one bitmap page (4096 bytes * 8 bits * 4 KiB): 128 MiB.
pub const BYTES_COVERED_PER_BITMAP_PAGE: u64 = PAGE_SIZE * 8 * PAGE_SIZE;
/// The narrowest coverage a bitmap can have: a single bitmap page covers 2^27 bytes.
pub const MIN_COVERAGE_BITS: u8 = 27;
/// The widest linear address space of x86-64 (5-level paging).
pub const MAX_ADDRESS_BITS: u8 = 57;

/// Where the bit for a code address lives: the byte offset in the bitmap and the bit in that byte.
pub fn bit_position(code_addr: u64) -> (u64, u8) {
    (code_addr >> 15, ((code_addr >> 12) & 7) as u8)
}

/// The bitmap page index (offset / 4096) holding the bit for a code address.
pub fn bitmap_page_for(code_addr: u64) -> u64 {
    code_addr >> 27
}

/// The code address range `[start, end)` whose bits live in bitmap page `page`.
/// `end` saturates at `u64::MAX` for pages beyond the 64-bit space.
pub fn code_range_of_bitmap_page(page: u64) -> (u64, u64) {
    let start = page.saturating_mul(BYTES_COVERED_PER_BITMAP_PAGE);
    (start, start.saturating_add(BYTES_COVERED_PER_BITMAP_PAGE))
}

/// The bitmap length that covers `bits` address bits: 2^(bits-15) bytes.
pub fn bitmap_length_for_bits(bits: u8) -> Option<u64> {
    (15..64).contains(&bits).then(|| 1u64 << (bits - 15))
}

/// The address bits a bitmap of `length` bytes covers: the largest N with 2^(N-15) <= length.
/// `None` for a bitmap smaller than one byte of bits.
pub fn coverage_bits(length: u64) -> Option<u8> {
    // leading_zeros() is at most 63 here, so the sum is 15..=78.
    (length > 0).then(|| u8::try_from(78 - length.leading_zeros()))?.ok()
}

/// The number of address bits needed to map `[.., end)`: the smallest N with `end <= 2^N`.
/// A host whose user address space is N bits wide can hold anything `address_bits_needed` <= N
/// reports (ignoring the top guard page, which the host check handles separately).
pub fn address_bits_needed(end: u64) -> u8 {
    match end {
        0 | 1 => 0,
        // 1..=64 bits.
        e => u8::try_from(64 - (e - 1).leading_zeros()).unwrap_or(64),
    }
}

/// Whether an address is 4 KiB aligned.
pub fn is_page_aligned(addr: u64) -> bool {
    addr % PAGE_SIZE == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_position_matches_the_cpu_lookup() {
        // The CPU reads byte (LIP >> 15) and tests bit (LIP >> 12) & 7.
        assert_eq!(bit_position(0), (0, 0));
        assert_eq!(bit_position(0x1000), (0, 1));
        assert_eq!(bit_position(0x7000), (0, 7));
        assert_eq!(bit_position(0x8000), (1, 0));
        assert_eq!(bit_position(0x5555_5555_4123), (0x5555_5555_4123 >> 15, 4));
    }

    #[test]
    fn bitmap_page_covers_128_mib() {
        assert_eq!(bitmap_page_for(0), 0);
        assert_eq!(bitmap_page_for((128 << 20) - 1), 0);
        assert_eq!(bitmap_page_for(128 << 20), 1);
        assert_eq!(code_range_of_bitmap_page(2), (256 << 20, 384 << 20));
        for addr in [0u64, 0x40_0000, 0x7fff_ffff_f000, 1 << 50] {
            let (start, end) = code_range_of_bitmap_page(bitmap_page_for(addr));
            assert!(start <= addr && addr < end);
            let (byte, _) = bit_position(addr);
            assert_eq!(byte / PAGE_SIZE, bitmap_page_for(addr));
        }
    }

    #[test]
    fn lengths_and_coverage_agree() {
        assert_eq!(bitmap_length_for_bits(47), Some(4 << 30));
        assert_eq!(bitmap_length_for_bits(48), Some(8 << 30));
        assert_eq!(bitmap_length_for_bits(57), Some(4 << 40));
        assert_eq!(bitmap_length_for_bits(64), None);
        for bits in 15..64 {
            assert_eq!(coverage_bits(bitmap_length_for_bits(bits).unwrap()), Some(bits));
        }
        assert_eq!(coverage_bits(0), None);
        assert_eq!(coverage_bits((8 << 30) + 4096), Some(48));
    }

    #[test]
    fn address_bits_needed_is_the_smallest_width_that_holds_end() {
        assert_eq!(address_bits_needed(1 << 47), 47);
        assert_eq!(address_bits_needed((1 << 47) + 1), 48);
        assert_eq!(address_bits_needed((1 << 50) + (8 << 30)), 51);
        assert_eq!(address_bits_needed(u64::MAX), 64);
        assert_eq!(address_bits_needed(4096), 12);
    }
}
