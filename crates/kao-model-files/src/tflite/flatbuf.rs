//! A bounded FlatBuffers reader: every offset, length and vtable entry is checked
//! against the buffer before use, so corrupt input gives an error, never a panic.

/// Why a read failed: a byte offset and a description (the file name is added by the
/// caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) offset: usize,
    pub(crate) what: String,
}

pub(crate) type Res<T> = Result<T, Fault>;

fn fault<T>(offset: usize, what: impl Into<String>) -> Res<T> {
    Err(Fault {
        offset,
        what: what.into(),
    })
}

/// The whole flatbuffer.
#[derive(Clone, Copy)]
pub(crate) struct Buf<'a>(pub(crate) &'a [u8]);

impl<'a> Buf<'a> {
    fn bytes(&self, at: usize, n: usize, what: &str) -> Res<&'a [u8]> {
        match at.checked_add(n) {
            Some(end) if end <= self.0.len() => Ok(&self.0[at..end]),
            _ => fault(
                at,
                format!(
                    "{what}: {n} bytes at offset {at} run past the end of the file ({} bytes)",
                    self.0.len()
                ),
            ),
        }
    }

    fn u32(&self, at: usize, what: &str) -> Res<u32> {
        let b = self.bytes(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&self, at: usize, what: &str) -> Res<u16> {
        let b = self.bytes(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Follows the `uoffset` stored at `at` (relative to `at`).
    fn follow(&self, at: usize, what: &str) -> Res<usize> {
        let off = self.u32(at, what)? as usize;
        match at.checked_add(off) {
            Some(t) if off != 0 && t < self.0.len() => Ok(t),
            _ => fault(
                at,
                format!("{what}: offset {off} at {at} points outside the file"),
            ),
        }
    }

    /// The root table.
    pub(crate) fn root(&self, what: &str) -> Res<Table<'a>> {
        let at = self.follow(0, what)?;
        Table::new(*self, at, what)
    }
}

/// A table: its position and its vtable.
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    buf: Buf<'a>,
    pos: usize,
    vtable: usize,
    vt_len: usize,
    table_len: usize,
}

impl<'a> Table<'a> {
    fn new(buf: Buf<'a>, pos: usize, what: &str) -> Res<Self> {
        let soff = buf.u32(pos, what)? as i32 as i64;
        let vtable = pos as i64 - soff;
        if vtable < 0 || vtable as usize >= buf.0.len() {
            return fault(
                pos,
                format!("{what}: vtable offset {soff} points outside the file"),
            );
        }
        let vtable = vtable as usize;
        let vt_len = buf.u16(vtable, what)? as usize;
        let table_len = buf.u16(vtable + 2, what)? as usize;
        if vt_len < 4 || !vt_len.is_multiple_of(2) {
            return fault(vtable, format!("{what}: bad vtable size {vt_len}"));
        }
        buf.bytes(vtable, vt_len, what)?;
        buf.bytes(pos, table_len.max(4), what)?;
        Ok(Table {
            buf,
            pos,
            vtable,
            vt_len,
            table_len,
        })
    }

    /// Position of field `id` inside the table, or `None` when absent; the field's
    /// `size` bytes are checked to lie inside the table.
    fn field(&self, id: usize, size: usize, what: &str) -> Res<Option<usize>> {
        let slot = 4 + 2 * id;
        if slot + 2 > self.vt_len {
            return Ok(None);
        }
        let off = self.buf.u16(self.vtable + slot, what)? as usize;
        if off == 0 {
            return Ok(None);
        }
        if off + size > self.table_len {
            return fault(
                self.pos,
                format!(
                    "{what}: field {id} ({size} bytes at {off}) lies outside its table ({} bytes)",
                    self.table_len
                ),
            );
        }
        Ok(Some(self.pos + off))
    }

    fn scalar<const N: usize>(&self, id: usize, what: &str) -> Res<Option<[u8; N]>> {
        match self.field(id, N, what)? {
            None => Ok(None),
            Some(at) => {
                let b = self.buf.bytes(at, N, what)?;
                let mut out = [0; N];
                out.copy_from_slice(b);
                Ok(Some(out))
            }
        }
    }

    pub(crate) fn u8(&self, id: usize, default: u8, what: &str) -> Res<u8> {
        Ok(self.scalar::<1>(id, what)?.map_or(default, |b| b[0]))
    }

    pub(crate) fn bool(&self, id: usize, what: &str) -> Res<bool> {
        Ok(self.u8(id, 0, what)? != 0)
    }

    pub(crate) fn i32(&self, id: usize, default: i32, what: &str) -> Res<i32> {
        Ok(self
            .scalar::<4>(id, what)?
            .map_or(default, i32::from_le_bytes))
    }

    pub(crate) fn u32(&self, id: usize, default: u32, what: &str) -> Res<u32> {
        Ok(self
            .scalar::<4>(id, what)?
            .map_or(default, u32::from_le_bytes))
    }

    pub(crate) fn u64(&self, id: usize, default: u64, what: &str) -> Res<u64> {
        Ok(self
            .scalar::<8>(id, what)?
            .map_or(default, u64::from_le_bytes))
    }

    fn target(&self, id: usize, what: &str) -> Res<Option<usize>> {
        match self.field(id, 4, what)? {
            None => Ok(None),
            Some(at) => self.buf.follow(at, what).map(Some),
        }
    }

    /// A sub-table field.
    pub(crate) fn table(&self, id: usize, what: &str) -> Res<Option<Table<'a>>> {
        match self.target(id, what)? {
            None => Ok(None),
            Some(at) => Table::new(self.buf, at, what).map(Some),
        }
    }

    /// A vector field of `elem`-byte elements: (first element position, length).
    fn vector(&self, id: usize, elem: usize, what: &str) -> Res<Option<(usize, usize)>> {
        let Some(at) = self.target(id, what)? else {
            return Ok(None);
        };
        let len = self.buf.u32(at, what)? as usize;
        let start = at + 4;
        let avail = self.buf.0.len().saturating_sub(start);
        if len > avail / elem.max(1) {
            return fault(
                at,
                format!("{what}: vector of {len} × {elem} bytes runs past the end of the file"),
            );
        }
        Ok(Some((start, len)))
    }

    /// A `[ubyte]` or string field as bytes.
    pub(crate) fn bytes(&self, id: usize, what: &str) -> Res<Option<&'a [u8]>> {
        match self.vector(id, 1, what)? {
            None => Ok(None),
            Some((start, len)) => self.buf.bytes(start, len, what).map(Some),
        }
    }

    /// A string field (invalid UTF-8 is replaced).
    pub(crate) fn string(&self, id: usize, what: &str) -> Res<Option<String>> {
        Ok(self
            .bytes(id, what)?
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// An `[int]` field (empty when absent).
    pub(crate) fn i32s(&self, id: usize, what: &str) -> Res<Vec<i32>> {
        let Some((start, len)) = self.vector(id, 4, what)? else {
            return Ok(Vec::new());
        };
        let b = self.buf.bytes(start, 4 * len, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A vector-of-tables field (empty when absent).
    pub(crate) fn tables(&self, id: usize, what: &str) -> Res<Vec<Table<'a>>> {
        let Some((start, len)) = self.vector(id, 4, what)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| {
                let at = self.buf.follow(start + 4 * i, what)?;
                Table::new(self.buf, at, what)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_offsets() {
        assert!(Buf(&[]).root("model").is_err());
        assert!(Buf(&[4, 0, 0, 0]).root("model").is_err());
        assert!(
            Buf(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
                .root("model")
                .is_err()
        );
        // Root at 4 whose vtable lies before the start of the file.
        assert!(Buf(&[4, 0, 0, 0, 100, 0, 0, 0]).root("model").is_err());
    }

    #[test]
    fn reads_a_tiny_table() {
        // vtable at 4: size 8, table size 8, field0 at +4; table at 12: soffset 8, i32 7.
        let data = [12, 0, 0, 0, 8, 0, 8, 0, 4, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0];
        let t = Buf(&data).root("t").unwrap();
        assert_eq!(t.i32(0, -1, "t").unwrap(), 7);
        assert_eq!(t.i32(1, -1, "t").unwrap(), -1);
        assert!(t.tables(0, "t").is_err());
    }
}
