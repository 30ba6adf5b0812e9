//! The shard's numeric arrays: one safetensors file (`arrays.safetensors`, readable by
//! `safetensors.numpy.load_file`) written whole by stage A, and read by the merge a row at a
//! time ([`ArrayFile::read_rows`], positioned reads) or front to back ([`ArrayFile::rows`]), so
//! the merge never holds a shard's chunk vectors in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use lexforge_core::Error as CoreError;

use crate::error::{DataError, Result};

/// One named array to write: its dtype, `[rows, width]` shape and little-endian bytes.
pub(crate) struct Array<'a> {
    pub name: &'static str,
    pub dtype: Dtype,
    pub rows: usize,
    pub width: usize,
    pub bytes: &'a [u8],
}

/// The safetensors bytes of `arrays` (each `[rows, width]`).
pub(crate) fn encode(arrays: &[Array<'_>], path: &Path) -> Result<Vec<u8>> {
    let bad = |e: safetensors::SafeTensorError| DataError::Shard {
        path: path.to_path_buf(),
        reason: format!("cannot encode the arrays: {e}"),
    };
    let views = arrays
        .iter()
        .map(|a| TensorView::new(a.dtype, vec![a.rows, a.width], a.bytes).map(|v| (a.name, v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(bad)?;
    safetensors::serialize(views, None).map_err(bad)
}

/// Little-endian bytes of f32 values.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Little-endian bytes of u32 values.
pub(crate) fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Where one array sits in the file.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Absolute offset of row 0.
    start: u64,
    rows: u64,
    /// Bytes per row.
    row_bytes: u64,
}

/// A safetensors file opened for row reads; the header is checked against the file length
/// and the expected dtypes and widths.
#[derive(Debug)]
pub(crate) struct ArrayFile {
    path: PathBuf,
    file: File,
    entries: BTreeMap<String, Entry>,
}

impl ArrayFile {
    /// Opens `path` and checks that it holds `expect` arrays: `(name, dtype, rows, width)`.
    pub fn open(path: &Path, expect: &[(&str, Dtype, u64, u64)]) -> Result<Self> {
        let damaged = |reason: String| DataError::Shard {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| CoreError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| CoreError::io("stat", path, e))?
            .len();
        let mut n = [0u8; 8];
        file.read_exact_at(&mut n, 0)
            .map_err(|_| damaged("shorter than a safetensors header".to_owned()))?;
        let n = u64::from_le_bytes(n);
        if n > len.saturating_sub(8) || n > 100 << 20 {
            return Err(damaged(format!("header of {n} bytes in a {len}-byte file")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact_at(&mut header, 8)
            .map_err(|e| CoreError::io("read", path, e))?;
        let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| damaged(format!("header is not safetensors JSON: {e}")))?;
        let mut entries = BTreeMap::new();
        for &(name, dtype, rows, width) in expect {
            let t = header
                .get(name)
                .ok_or_else(|| damaged(format!("no array {name:?}")))?;
            let size = dtype.bitsize() as u64 / 8;
            let want_dtype = format!("{dtype:?}");
            let shape: Option<Vec<u64>> = t["shape"]
                .as_array()
                .and_then(|s| s.iter().map(serde_json::Value::as_u64).collect());
            let offsets: Option<Vec<u64>> = t["data_offsets"]
                .as_array()
                .and_then(|s| s.iter().map(serde_json::Value::as_u64).collect());
            let (Some(shape), Some(offsets)) = (shape, offsets) else {
                return Err(damaged(format!("array {name:?} has no shape or offsets")));
            };
            if t["dtype"].as_str() != Some(want_dtype.as_str())
                || shape != [rows, width]
                || offsets.len() != 2
                || offsets[1] < offsets[0]
                || offsets[1] - offsets[0] != rows * width * size
                || 8 + n + offsets[1] > len
            {
                return Err(damaged(format!(
                    "array {name:?} is {} {shape:?} at {offsets:?}; expected {want_dtype} \
                     [{rows}, {width}] inside {len} bytes",
                    t["dtype"]
                )));
            }
            entries.insert(
                name.to_owned(),
                Entry {
                    start: 8 + n + offsets[0],
                    rows,
                    row_bytes: width * size,
                },
            );
        }
        Ok(ArrayFile {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    fn entry(&self, name: &str) -> Entry {
        self.entries[name]
    }

    /// Reads rows `first..first + out.len() / row_bytes` of array `name` into `out`.
    pub fn read_rows(&self, name: &str, first: u64, out: &mut [u8]) -> Result<()> {
        let e = self.entry(name);
        debug_assert!(first * e.row_bytes + out.len() as u64 <= e.rows * e.row_bytes);
        self.file
            .read_exact_at(out, e.start + first * e.row_bytes)
            .map_err(|err| CoreError::io("read", &self.path, err).into())
    }

    /// Row `row` of the f32 array `name` into `out` (its width).
    pub fn read_f32(&self, name: &str, row: u64, out: &mut [f32]) -> Result<()> {
        let mut buf = vec![0u8; out.len() * 4];
        self.read_rows(name, row, &mut buf)?;
        decode_f32(&buf, out);
        Ok(())
    }

    /// Row `row` of the u32 array `name` into `out` (its width).
    pub fn read_u32(&self, name: &str, row: u64, out: &mut [u32]) -> Result<()> {
        let mut buf = vec![0u8; out.len() * 4];
        self.read_rows(name, row, &mut buf)?;
        decode_u32(&buf, out);
        Ok(())
    }

    /// A front-to-back reader of array `name`'s rows.
    pub fn rows(&self, name: &str) -> Result<RowReader> {
        let e = self.entry(name);
        let mut f = File::open(&self.path).map_err(|err| CoreError::io("open", &self.path, err))?;
        f.seek(SeekFrom::Start(e.start))
            .map_err(|err| CoreError::io("seek", &self.path, err))?;
        Ok(RowReader {
            path: self.path.clone(),
            inner: BufReader::with_capacity(1 << 16, f),
            left: e.rows,
            row: vec![0u8; e.row_bytes as usize],
        })
    }
}

/// Rows of one array, in order.
#[derive(Debug)]
pub(crate) struct RowReader {
    path: PathBuf,
    inner: BufReader<File>,
    left: u64,
    row: Vec<u8>,
}

impl RowReader {
    /// The next row's bytes, or `None` after the last.
    pub fn next_row(&mut self) -> Result<Option<&[u8]>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.inner
            .read_exact(&mut self.row)
            .map_err(|e| CoreError::io("read", &self.path, e))?;
        Ok(Some(&self.row))
    }
}

/// Decodes little-endian f32 row bytes into `out`.
pub(crate) fn decode_f32(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Decodes little-endian u32 row bytes into `out`.
pub(crate) fn decode_u32(bytes: &[u8], out: &mut [u32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip_by_row_and_in_order_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let s: Vec<u32> = (0..6).collect();
        let bytes = encode(
            &[
                Array {
                    name: "v",
                    dtype: Dtype::F32,
                    rows: 4,
                    width: 3,
                    bytes: &f32_bytes(&v),
                },
                Array {
                    name: "s",
                    dtype: Dtype::U32,
                    rows: 3,
                    width: 2,
                    bytes: &u32_bytes(&s),
                },
            ],
            &path,
        )
        .unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let f =
            ArrayFile::open(&path, &[("v", Dtype::F32, 4, 3), ("s", Dtype::U32, 3, 2)]).unwrap();
        let mut row = [0f32; 3];
        f.read_f32("v", 2, &mut row).unwrap();
        assert_eq!(row, [3.0, 3.5, 4.0]);
        let mut r = [0u32; 2];
        f.read_u32("s", 1, &mut r).unwrap();
        assert_eq!(r, [2, 3]);
        let mut it = f.rows("v").unwrap();
        let mut all = Vec::new();
        while let Some(b) = it.next_row().unwrap() {
            let mut x = [0f32; 3];
            decode_f32(b, &mut x);
            all.extend(x);
        }
        assert_eq!(all, v);
        // Another shape, a missing array, a truncated file.
        assert!(ArrayFile::open(&path, &[("v", Dtype::F32, 4, 4)]).is_err());
        assert!(ArrayFile::open(&path, &[("w", Dtype::F32, 4, 3)]).is_err());
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        assert!(matches!(
            ArrayFile::open(&path, &[("v", Dtype::F32, 4, 3), ("s", Dtype::U32, 3, 2)]),
            Err(DataError::Shard { .. })
        ));
    }
}
