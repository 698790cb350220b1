//! The old strict JSON checker (secmesh-core `json::check_object` before issue 13), verbatim
//! but for its error type, which is secmesh-core's.

pub use secmesh_core::json::JsonError;
use std::borrow::Cow;
use std::collections::HashSet;

/// The default nesting limit: objects and arrays inside each other, the top object counted.
pub const DEFAULT_MAX_DEPTH: usize = 16;

/// Check that `bytes` is one strict JSON object (see the module documentation).
pub fn check_object(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    // Validate UTF-8 once for the whole input (fast, vectorised) so that strings need not be
    // checked one by one; escapes are decoded to valid UTF-8 by construction.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(JsonError::Syntax {
            offset: e.valid_up_to(),
        });
    }
    let mut c = Checker {
        b: bytes,
        pos: 0,
        max_depth,
    };
    c.ws();
    if c.peek() != Some(b'{') {
        return Err(if c.pos < bytes.len() {
            JsonError::NotAnObject
        } else {
            JsonError::Syntax { offset: c.pos }
        });
    }
    c.value(0)?;
    c.ws();
    if c.pos != bytes.len() {
        return Err(c.syntax());
    }
    Ok(())
}

struct Checker<'a> {
    b: &'a [u8],
    pos: usize,
    max_depth: usize,
}

/// Keys of one object: on the stack for the small objects tokens have (compared by a short
/// hash first), a set past that.
// On the stack on purpose: no allocation for objects of up to 16 members.
#[allow(clippy::large_enum_variant)]
enum Keys<'a> {
    Few([(u64, Cow<'a, [u8]>); Keys::LINEAR], usize),
    Many(HashSet<Cow<'a, [u8]>>),
}

/// FNV-1a: enough to tell short keys apart quickly; equal hashes are compared in full.
fn fnv(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<'a> Keys<'a> {
    const LINEAR: usize = 16;

    fn new() -> Self {
        Keys::Few(std::array::from_fn(|_| (0, Cow::Borrowed(&[][..]))), 0)
    }

    /// Record a key; gives it back if it was already there.
    fn insert(&mut self, key: Cow<'a, [u8]>) -> Option<Cow<'a, [u8]>> {
        match self {
            Keys::Few(keys, len) => {
                let h = fnv(&key);
                if keys[..*len].iter().any(|(kh, k)| *kh == h && *k == key) {
                    return Some(key);
                }
                if *len < Self::LINEAR {
                    keys[*len] = (h, key);
                    *len += 1;
                } else {
                    let mut set: HashSet<Cow<'a, [u8]>> =
                        keys.iter_mut().map(|(_, k)| std::mem::take(k)).collect();
                    set.insert(key);
                    *self = Keys::Many(set);
                }
                None
            }
            Keys::Many(s) => {
                if s.contains(&key) {
                    Some(key)
                } else {
                    s.insert(key);
                    None
                }
            }
        }
    }
}

impl<'a> Checker<'a> {
    fn syntax(&self) -> JsonError {
        JsonError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), JsonError> {
        match self.b.get(self.pos..self.pos + lit.len()) {
            Some(s) if s == lit => {
                self.pos += lit.len();
                Ok(())
            }
            _ => Err(self.syntax()),
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut keys = Keys::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            if let Some(dup) = keys.insert(key) {
                return Err(JsonError::DuplicateKey {
                    key: String::from_utf8_lossy(&dup).chars().take(64).collect(),
                });
            }
            self.ws();
            self.eat(b':')?;
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep {
                limit: self.max_depth,
            });
        }
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
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
        Ok(())
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

    /// A string starting at the opening quote; returns its unescaped value, borrowed when
    /// it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, [u8]>, JsonError> {
        self.eat(b'"')?;
        let start = self.pos;
        // Fast path: scan to the first quote, backslash or control byte.
        let stop = self.b[start..]
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map_or(self.b.len(), |i| start + i);
        self.pos = stop;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                return Ok(Cow::Borrowed(&self.b[start..stop]));
            }
            Some(b'\\') => {}
            _ => return Err(self.syntax()),
        }
        let mut out: Vec<u8> = self.b[start..self.pos].to_vec();
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
                    match esc {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let ch = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.syntax());
                        }
                    }
                }
                Some(0..=0x1f) | None => return Err(self.syntax()),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining surrogate pairs.
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
