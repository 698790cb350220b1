//! The strict reader behind [`check_object`](super::check_object) and the one-pass decoders
//! (claims, JWS header): one walk over the bytes, checking exactly what the checker checks at
//! each byte, while the caller decodes the members it knows into their types.

use std::borrow::Cow;
use std::collections::HashSet;

use super::JsonError;

/// A strict, one-pass JSON reader over bytes that are valid UTF-8 (checked once in
/// [`Reader::new`]). Every method checks the bytes it consumes exactly as
/// [`check_object`](super::check_object) does, so a decoder built on it refuses what the
/// checker refuses, with the same [`JsonError`].
///
/// Depths follow the checker: the top-level object is at depth 1, and a value inside a
/// container at depth `d` opens its own containers at `d + 1`.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    s: &'a str,
    pos: usize,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, which must be UTF-8 (the error is a syntax error at the first
    /// invalid byte).
    pub fn new(bytes: &'a [u8], max_depth: usize) -> Result<Self, JsonError> {
        let s = std::str::from_utf8(bytes).map_err(|e| JsonError::Syntax {
            offset: e.valid_up_to(),
        })?;
        Ok(Reader {
            s,
            pos: 0,
            max_depth,
        })
    }

    #[inline]
    fn b(&self) -> &'a [u8] {
        self.s.as_bytes()
    }

    /// A syntax error at the current position.
    pub fn syntax(&self) -> JsonError {
        JsonError::Syntax { offset: self.pos }
    }

    /// The current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Go back to an offset this reader was at before (to re-read a value).
    pub fn rewind(&mut self, pos: usize) {
        self.pos = pos.min(self.s.len());
    }

    /// The next byte, if any.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.b().get(self.pos).copied()
    }

    /// Skip whitespace.
    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    /// Consume the literal `lit` (`true`, `false`, `null`).
    pub fn literal(&mut self, lit: &[u8]) -> Result<(), JsonError> {
        match self.b().get(self.pos..self.pos + lit.len()) {
            Some(s) if s == lit => {
                self.pos += lit.len();
                Ok(())
            }
            _ => Err(self.syntax()),
        }
    }

    /// Open the top-level object: whitespace, then `{` (anything else is
    /// [`JsonError::NotAnObject`], or a syntax error on empty input).
    pub fn begin_top_object(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.peek() != Some(b'{') {
            return Err(if self.pos < self.s.len() {
                JsonError::NotAnObject
            } else {
                self.syntax()
            });
        }
        self.begin_object(1)
    }

    /// After the top-level object: only whitespace may follow.
    pub fn end_top(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.pos != self.s.len() {
            return Err(self.syntax());
        }
        Ok(())
    }

    /// Open an object at `depth` (the reader is at `{`).
    pub fn begin_object(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.eat(b'{')
    }

    /// The next key of an open object (`first`: right after `{`), or `None` at its `}`. The
    /// caller checks for a duplicate, then calls [`colon`](Self::colon) and reads the value.
    #[inline]
    pub fn key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, JsonError> {
        self.ws();
        if first {
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(None);
            }
        } else {
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(None);
                }
                _ => return Err(self.syntax()),
            }
        }
        if self.peek() != Some(b'"') {
            return Err(self.syntax());
        }
        self.string().map(Some)
    }

    /// The `:` after a key, with the whitespace around it.
    #[inline]
    pub fn colon(&mut self) -> Result<(), JsonError> {
        self.ws();
        self.eat(b':')?;
        self.ws();
        Ok(())
    }

    /// Open an array at `depth` (the reader is at `[`).
    pub fn begin_array(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.eat(b'[')
    }

    /// Whether an element follows in an open array (`first`: right after `[`); the reader is
    /// then at it. `false` after consuming the `]`.
    pub fn element(&mut self, first: bool) -> Result<bool, JsonError> {
        self.ws();
        if first {
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(false);
            }
            return Ok(true);
        }
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.ws();
                Ok(true)
            }
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.syntax()),
        }
    }

    /// Check and skip one value inside a container at `depth`.
    pub fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.skip_object(depth + 1),
            Some(b'[') => self.skip_array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            _ => Err(self.syntax()),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Result<(), JsonError> {
        self.begin_object(depth)?;
        let mut keys = SeenKeys::new();
        let mut first = true;
        while let Some(key) = self.key(first)? {
            first = false;
            keys.insert(key)?;
            self.colon()?;
            self.skip_value(depth)?;
        }
        Ok(())
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), JsonError> {
        self.begin_array(depth)?;
        let mut first = true;
        while self.element(first)? {
            first = false;
            self.skip_value(depth)?;
        }
        Ok(())
    }

    /// A number (the reader is at `-` or a digit); returns its text.
    pub fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits1()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits1()?;
        }
        Ok(&self.s[start..self.pos])
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn digits1(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(self.syntax());
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.syntax()),
            };
            v = (v << 4) | u16::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A string (the reader is at its opening quote); its unescaped value, borrowed when it
    /// has no escapes.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.eat(b'"')?;
        let start = self.pos;
        let stop = start + plain_len(&self.b()[start..]);
        self.pos = stop;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                // Both ends are ASCII quotes: char boundaries.
                Ok(Cow::Borrowed(&self.s[start..stop]))
            }
            Some(b'\\') => self.escaped(start),
            _ => Err(self.syntax()),
        }
    }

    /// The rest of a string with escapes: `start` is its first byte, the reader is at the
    /// first backslash.
    #[cold]
    #[inline(never)]
    fn escaped(&mut self, start: usize) -> Result<Cow<'a, str>, JsonError> {
        let b = self.b();
        let stop = self.pos;
        let mut out = String::with_capacity(stop - start + 16);
        out.push_str(&self.s[start..stop]);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = self.peek().ok_or_else(|| self.syntax())?;
                    self.pos += 1;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => {
                            self.pos -= 1;
                            return Err(self.syntax());
                        }
                    };
                    out.push(c);
                }
                Some(0..=0x1f) | None => return Err(self.syntax()),
                Some(_) => {
                    // A run of plain characters, up to the next quote, backslash or control
                    // byte (all ASCII, so the run ends on a char boundary).
                    let run = self.pos;
                    let end = run + plain_len(&b[run..]);
                    out.push_str(&self.s[run..end]);
                    self.pos = end;
                }
            }
        }
    }

    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.syntax());
                }
                0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.syntax()),
            _ => u32::from(hi),
        };
        char::from_u32(code).ok_or_else(|| self.syntax())
    }
}

/// The keys of one object, to refuse a duplicate (compared after unescaping): on the stack
/// for the small objects tokens have (compared by a short hash first), a hash set past that,
/// so that an object of n keys costs O(n).
#[derive(Debug)]
pub struct SeenKeys<'a> {
    // `None` until used: an empty set is one word per slot to set up, not four.
    few: [Option<(u64, Cow<'a, str>)>; SeenKeys::LINEAR],
    len: usize,
    many: Option<HashSet<Cow<'a, str>>>,
}

/// FNV-1a: enough to tell short keys apart quickly; equal hashes are compared in full.
fn fnv(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<'a> Default for SeenKeys<'a> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> SeenKeys<'a> {
    const LINEAR: usize = 16;

    /// No key seen yet.
    pub fn new() -> Self {
        SeenKeys {
            few: [const { None }; SeenKeys::LINEAR],
            len: 0,
            many: None,
        }
    }

    /// Record a key; a [`JsonError::DuplicateKey`] if it was there already.
    pub fn insert(&mut self, key: Cow<'a, str>) -> Result<(), JsonError> {
        if let Some(set) = &mut self.many {
            if set.contains(&key) {
                return Err(duplicate(&key));
            }
            set.insert(key);
            return Ok(());
        }
        let h = fnv(key.as_bytes());
        if self.few[..self.len]
            .iter()
            .flatten()
            .any(|(kh, k)| *kh == h && *k == key)
        {
            return Err(duplicate(&key));
        }
        if self.len < Self::LINEAR {
            self.few[self.len] = Some((h, key));
            self.len += 1;
        } else {
            let mut set: HashSet<Cow<'a, str>> = self
                .few
                .iter_mut()
                .filter_map(|slot| slot.take().map(|(_, k)| k))
                .collect();
            set.insert(key);
            self.many = Some(set);
        }
        Ok(())
    }
}

/// The error for a repeated key (its text truncated to 64 characters).
pub(crate) fn duplicate(key: &str) -> JsonError {
    JsonError::DuplicateKey {
        key: key.chars().take(64).collect(),
    }
}

/// The length of the run of plain string bytes at the start of `b`: up to the first quote,
/// backslash or control byte (or all of `b`). Eight bytes at a time (the last word padded with
/// a plain byte): the zero-byte tests of `w ^ '"'`, `w ^ '\\'` and `w - 0x20` fire on every
/// such byte and may also fire on bytes after the first one (a borrow only moves up), never
/// before it, so the lowest bit set marks the first.
#[inline]
fn plain_len(b: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut i = 0;
    loop {
        let rest = &b[i..];
        let n = rest.len().min(8);
        let w = match rest.first_chunk::<8>() {
            Some(word) => u64::from_le_bytes(*word),
            None => {
                let mut word = [b'a'; 8];
                for (w, &c) in word.iter_mut().zip(rest) {
                    *w = c;
                }
                u64::from_le_bytes(word)
            }
        };
        let hit = zero(w ^ (LO * u64::from(b'"')))
            | zero(w ^ (LO * u64::from(b'\\')))
            | (w.wrapping_sub(LO * 0x20) & !w & HI);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        if n < 8 {
            return b.len();
        }
        i += 8;
    }
}

#[cfg(test)]
mod tests {
    use super::plain_len;

    fn naive(b: &[u8]) -> usize {
        b.iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .unwrap_or(b.len())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        /// The word-at-a-time scan stops exactly where the byte-by-byte one does, whatever
        /// bytes surround the stop (0x1f/0x20 edges, bytes with the top bit set, quotes and
        /// backslashes after the first hit).
        #[test]
        fn word_scan_equals_byte_scan(b in proptest::collection::vec(proptest::sample::select(
            vec![b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff]), 0..40),
            pad in 0usize..20)
        {
            let mut v = vec![b'x'; pad];
            v.extend_from_slice(&b);
            proptest::prop_assert_eq!(plain_len(&v), naive(&v));
        }
    }

    #[test]
    fn every_single_stop_byte_at_every_offset() {
        for stop in 0u8..=255 {
            for at in 0..17 {
                let mut v = vec![b'a'; 20];
                v[at] = stop;
                assert_eq!(plain_len(&v), naive(&v), "byte {stop:#x} at {at}");
            }
        }
    }
}
