/// What a bitmap page holds, which decides how an image stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// Every byte 0: not stored (absent pages are zero).
    Zero,
    /// Every byte 0xff: stored as a run, without data.
    Ones,
    /// Anything else: stored compressed.
    Data,
}

impl PageKind {
    /// Classifies a page at memory speed: one look at the first byte, then a comparison of
    /// 64-byte chunks against a constant (memcmp, vectorized).
    pub fn of(page: &[u8]) -> PageKind {
        const ZERO: [u8; 64] = [0; 64];
        const ONES: [u8; 64] = [0xff; 64];
        let (pattern, kind) = match page.first() {
            Some(0) => (&ZERO, PageKind::Zero),
            Some(0xff) => (&ONES, PageKind::Ones),
            _ => return PageKind::Data,
        };
        let mut chunks = page.chunks_exact(64);
        let uniform = chunks.all(|c| c == pattern) && chunks.remainder().iter().all(|&b| b == pattern[0]);
        if uniform {
            kind
        } else {
            PageKind::Data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_uniform_and_mixed_pages() {
        assert_eq!(PageKind::of(&[0; 4096]), PageKind::Zero);
        assert_eq!(PageKind::of(&[0xff; 4096]), PageKind::Ones);
        for at in [0, 1, 63, 64, 4095] {
            let mut p = [0u8; 4096];
            p[at] = 1;
            assert_eq!(PageKind::of(&p), PageKind::Data, "zero page with byte {at} set");
            let mut p = [0xffu8; 4096];
            p[at] = 0xfe;
            assert_eq!(PageKind::of(&p), PageKind::Data, "ones page with byte {at} cleared");
        }
    }
}
