//! Reading and writing the IDX format (LeCun's MNIST container), gzipped or raw.
//!
//! An IDX file is: two zero bytes, a type byte (`0x08` = unsigned byte, the only type supported
//! here), a byte with the number of dimensions `d`, `d` big-endian `u32` sizes, then the
//! elements in row-major order. The payload length must match the sizes exactly.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use ndarray::{Array1, Array3};

use crate::error::{DatasetError, IdxFormatError};

/// The IDX type code for unsigned bytes.
pub const IDX_TYPE_U8: u8 = 0x08;

/// A parsed IDX array of unsigned bytes: dimension sizes and the row-major elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimension sizes, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// Converts to an [`ndarray::ArrayD`]; an error if `data.len()` is not the product of
    /// `dims` (possible only for an `IdxArray` built by hand: the readers check it).
    pub fn into_ndarray(self) -> Result<ndarray::ArrayD<u8>, DatasetError> {
        let dims = self.dims.clone();
        let len = self.data.len();
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&self.dims), self.data).map_err(|_| {
            DatasetError::InvalidArgument(format!(
                "dimensions {dims:?} do not match {len} data bytes"
            ))
        })
    }
}

fn idx_err(kind: IdxFormatError) -> DatasetError {
    DatasetError::Idx { path: None, kind }
}

/// The largest IDX payload this reader accepts (1 GiB; MNIST's training images are 47 MB).
/// A header that declares more is an [`IdxFormatError::TooLarge`] error before any allocation.
pub const MAX_IDX_PAYLOAD: usize = 1 << 30;

/// Deflate expands data by at most about 1032:1; a gzip stream of `n` bytes cannot hold more
/// than `n * MAX_DEFLATE_RATIO` bytes (a declared size above that is corrupt).
const MAX_DEFLATE_RATIO: usize = 1032;

/// Parses the fixed part of a header (magic, type, number of dimensions) from its first 4 bytes
/// and returns the header's full length.
fn header_len(head: &[u8]) -> Result<usize, DatasetError> {
    if head.len() < 4 {
        return Err(idx_err(IdxFormatError::TruncatedHeader {
            expected: 4,
            found: head.len(),
        }));
    }
    let magic = u16::from_be_bytes([head[0], head[1]]);
    if magic != 0 {
        return Err(idx_err(IdxFormatError::BadMagic { found: magic }));
    }
    if head[2] != IDX_TYPE_U8 {
        return Err(idx_err(IdxFormatError::UnsupportedType { found: head[2] }));
    }
    let ndims = head[3] as usize;
    if ndims == 0 {
        return Err(idx_err(IdxFormatError::NoDimensions));
    }
    Ok(4 + 4 * ndims)
}

/// Parses a whole header (`header.len()` is [`header_len`]) into the dimension sizes and the
/// number of payload bytes they declare, which must not exceed [`MAX_IDX_PAYLOAD`].
fn parse_dims(header: &[u8]) -> Result<(Vec<usize>, usize), DatasetError> {
    let dims: Vec<usize> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let declared = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| idx_err(IdxFormatError::Overflow { dims: dims.clone() }))?;
    if declared > MAX_IDX_PAYLOAD {
        return Err(idx_err(IdxFormatError::TooLarge {
            dims,
            declared,
            limit: MAX_IDX_PAYLOAD,
            why: "the reader's limit, MAX_IDX_PAYLOAD".into(),
        }));
    }
    Ok((dims, declared))
}

/// Validates an IDX header and the payload length of a whole uncompressed buffer and returns
/// `(dims, header_len)`.
fn parse_header(bytes: &[u8]) -> Result<(Vec<usize>, usize), DatasetError> {
    let header_len = header_len(bytes)?;
    if bytes.len() < header_len {
        return Err(idx_err(IdxFormatError::TruncatedHeader {
            expected: header_len,
            found: bytes.len(),
        }));
    }
    let (dims, expected) = parse_dims(&bytes[..header_len])?;
    let found = bytes.len() - header_len;
    if found != expected {
        return Err(idx_err(IdxFormatError::LengthMismatch {
            dims,
            expected,
            found,
        }));
    }
    Ok((dims, header_len))
}

/// Parses an (uncompressed) IDX array of unsigned bytes, validating the magic number, the
/// number of dimensions and that the payload length matches the dimension sizes exactly.
///
/// ```
/// use xai_datasets::{encode_idx, parse_idx};
/// let bytes = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
/// let arr = parse_idx(&bytes).unwrap();
/// assert_eq!(arr.dims, vec![2, 3]);
/// assert_eq!(arr.data, vec![1, 2, 3, 4, 5, 6]);
/// assert!(parse_idx(&bytes[..bytes.len() - 1]).is_err());
/// ```
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, DatasetError> {
    let (dims, header_len) = parse_header(bytes)?;
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Like [`parse_idx`] but takes ownership of the buffer and avoids copying the payload.
fn parse_idx_owned(mut bytes: Vec<u8>) -> Result<IdxArray, DatasetError> {
    let (dims, header_len) = parse_header(&bytes)?;
    bytes.drain(..header_len);
    Ok(IdxArray { dims, data: bytes })
}

/// Encodes an unsigned-byte IDX array (uncompressed). Errors if there are no dimensions, more
/// than 255, a size above `u32::MAX`, or if `data.len()` is not the product of `dims`.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Result<Vec<u8>, DatasetError> {
    if dims.is_empty() || dims.len() > 255 {
        return Err(DatasetError::InvalidArgument(format!(
            "IDX needs 1 to 255 dimensions, got {}",
            dims.len()
        )));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DatasetError::InvalidArgument(format!("dimensions {dims:?} overflow")))?;
    if expected != data.len() {
        return Err(DatasetError::InvalidArgument(format!(
            "dimensions {dims:?} need {expected} elements, got {}",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend_from_slice(&[0, 0, IDX_TYPE_U8, dims.len() as u8]);
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DatasetError::InvalidArgument(format!("dimension size {d} exceeds u32::MAX"))
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Parses IDX bytes that may be gzipped (detected by the gzip magic `1f 8b`, not by file name).
///
/// A gzipped file is decompressed as a stream: the header first, then exactly the payload it
/// declares (checked against [`MAX_IDX_PAYLOAD`] and against what the compressed size can hold
/// before anything is allocated for it), then the end of the stream is required. A file of
/// several gzip members is read as their concatenation (as `gzip -d` does); bytes after the last
/// member that are not another member are an error. Random or truncated input gives an error,
/// never a panic.
pub fn decode_idx_bytes(bytes: &[u8]) -> Result<IdxArray, DatasetError> {
    if is_gzip(bytes) {
        gunzip_idx(bytes)
    } else {
        parse_idx(bytes)
    }
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

fn gzip_err(source: std::io::Error) -> DatasetError {
    DatasetError::Gzip { path: None, source }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, DatasetError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip_err(e)),
        }
    }
    Ok(filled)
}

/// Decompresses a gzipped IDX file header first (see [`decode_idx_bytes`]).
fn gunzip_idx(bytes: &[u8]) -> Result<IdxArray, DatasetError> {
    let mut dec = MultiGzDecoder::new(bytes);
    let mut header = vec![0u8; 4];
    let got = read_up_to(&mut dec, &mut header)?;
    let hlen = header_len(&header[..got])?;
    header.resize(hlen, 0);
    let got = 4 + read_up_to(&mut dec, &mut header[4..])?;
    if got < hlen {
        return Err(idx_err(IdxFormatError::TruncatedHeader {
            expected: hlen,
            found: got,
        }));
    }
    let (dims, declared) = parse_dims(&header)?;
    let can_hold = bytes.len().saturating_mul(MAX_DEFLATE_RATIO);
    if declared > can_hold {
        return Err(idx_err(IdxFormatError::TooLarge {
            dims,
            declared,
            limit: can_hold,
            why: format!("what a {}-byte gzip stream can decompress to", bytes.len()),
        }));
    }
    let mut data = vec![0u8; declared];
    let found = read_up_to(&mut dec, &mut data)?;
    if found < declared {
        return Err(idx_err(IdxFormatError::LengthMismatch {
            dims,
            expected: declared,
            found,
        }));
    }
    // The stream must end here: one more byte is trailing data (read no further than that).
    let mut one = [0u8; 1];
    if read_up_to(&mut dec, &mut one)? > 0 {
        return Err(idx_err(IdxFormatError::LengthMismatch {
            dims,
            expected: declared,
            found: declared + 1,
        }));
    }
    Ok(IdxArray { dims, data })
}

/// Reads a whole file, mapping errors to [`DatasetError`] with the path.
fn read_file(path: &Path) -> Result<Vec<u8>, DatasetError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DatasetError::NotFound {
                tried: vec![path.to_path_buf()],
                default_dir: std::path::PathBuf::from(crate::WORKSPACE_MNIST_DIR),
            }
        } else {
            DatasetError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads an IDX file (gzipped or raw) of any rank.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray, DatasetError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let arr = if is_gzip(&bytes) {
        gunzip_idx(&bytes)
    } else {
        parse_idx_owned(bytes)
    };
    arr.map_err(|e| e.with_path(path))
}

/// Reads an IDX image file (gzipped or raw): must have 3 dimensions `[n, rows, cols]`.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<Array3<u8>, DatasetError> {
    let path = path.as_ref();
    let arr = read_idx(path)?;
    if arr.dims.len() != 3 {
        return Err(DatasetError::Unexpected {
            path: path.to_path_buf(),
            expected: "an image file with 3 dimensions [n, rows, cols] (magic 0x00000803)".into(),
            found: format!("{} dimension(s) {:?}", arr.dims.len(), arr.dims),
        });
    }
    let (n, r, c) = (arr.dims[0], arr.dims[1], arr.dims[2]);
    Array3::from_shape_vec((n, r, c), arr.data).map_err(|e| DatasetError::Unexpected {
        path: path.to_path_buf(),
        expected: format!("{} bytes for [{n}, {r}, {c}]", n * r * c),
        found: e.to_string(),
    })
}

/// Reads an IDX label file (gzipped or raw): must have 1 dimension `[n]`.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Array1<u8>, DatasetError> {
    let path = path.as_ref();
    let arr = read_idx(path)?;
    if arr.dims.len() != 1 {
        return Err(DatasetError::Unexpected {
            path: path.to_path_buf(),
            expected: "a label file with 1 dimension [n] (magic 0x00000801)".into(),
            found: format!("{} dimension(s) {:?}", arr.dims.len(), arr.dims),
        });
    }
    Ok(Array1::from_vec(arr.data))
}

/// Writes `arr` as an IDX file; gzipped (default compression) when `gzip` is true.
pub fn write_idx(
    path: impl AsRef<Path>,
    dims: &[usize],
    data: &[u8],
    gzip: bool,
) -> Result<(), DatasetError> {
    use std::io::Write;
    let path = path.as_ref();
    let raw = encode_idx(dims, data)?;
    let io = |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = if gzip {
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), Default::default());
        enc.write_all(&raw).map_err(io)?;
        enc.finish().map_err(io)?
    } else {
        raw
    };
    std::fs::write(path, bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_are_specific() {
        assert!(matches!(
            parse_idx(&[0, 0]),
            Err(DatasetError::Idx {
                kind: IdxFormatError::TruncatedHeader {
                    expected: 4,
                    found: 2
                },
                ..
            })
        ));
        assert!(matches!(
            parse_idx(&[1, 2, 8, 1, 0, 0, 0, 0]),
            Err(DatasetError::Idx {
                kind: IdxFormatError::BadMagic { found: 0x0102 },
                ..
            })
        ));
        assert!(matches!(
            parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0]),
            Err(DatasetError::Idx {
                kind: IdxFormatError::UnsupportedType { found: 0x0d },
                ..
            })
        ));
        assert!(matches!(
            parse_idx(&[0, 0, 8, 0]),
            Err(DatasetError::Idx {
                kind: IdxFormatError::NoDimensions,
                ..
            })
        ));
        // Trailing bytes are an error too.
        let mut b = encode_idx(&[2], &[1, 2]).unwrap();
        b.push(3);
        let e = parse_idx(&b).unwrap_err();
        assert!(e.to_string().contains("need 2 data bytes, found 3"), "{e}");
    }

    #[test]
    fn overflowing_dims_are_an_error() {
        let mut b = vec![0, 0, 8, 4];
        for _ in 0..4 {
            b.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            parse_idx(&b),
            Err(DatasetError::Idx {
                kind: IdxFormatError::Overflow { .. },
                ..
            })
        ));
    }

    #[test]
    fn gzip_detection_and_truncated_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gz");
        write_idx(&p, &[3, 2], &[1, 2, 3, 4, 5, 6], true).unwrap();
        let arr = read_idx(&p).unwrap();
        assert_eq!(arr.dims, vec![3, 2]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 6]).unwrap();
        let e = read_idx(&p).unwrap_err();
        assert!(matches!(e, DatasetError::Gzip { .. }), "{e:?}");
        assert!(e.to_string().contains("x.gz"), "{e}");
    }

    fn gz(raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        enc.write_all(raw).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_is_read_header_first_and_exactly() {
        let raw = encode_idx(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(
            decode_idx_bytes(&gz(&raw)).unwrap().data,
            vec![1, 2, 3, 4, 5, 6]
        );

        // Bytes after the gzip stream are an error, not ignored.
        let mut trailing = gz(&raw);
        trailing.extend_from_slice(b"garbage after the stream");
        assert!(matches!(
            decode_idx_bytes(&trailing),
            Err(DatasetError::Gzip { .. })
        ));

        // Two members are one stream (gzip -d semantics): split anywhere, same array.
        for cut in [3, 4, 10, 15] {
            let mut two = gz(&raw[..cut]);
            two.extend_from_slice(&gz(&raw[cut..]));
            let arr = decode_idx_bytes(&two).unwrap();
            assert_eq!(
                (arr.dims.clone(), arr.data),
                (vec![2, 3], vec![1, 2, 3, 4, 5, 6])
            );
        }

        // A payload longer than declared, inside the stream.
        let mut long = raw.clone();
        long.push(7);
        let e = decode_idx_bytes(&gz(&long)).unwrap_err();
        assert!(matches!(
            e,
            DatasetError::Idx {
                kind: IdxFormatError::LengthMismatch {
                    expected: 6,
                    found: 7,
                    ..
                },
                ..
            }
        ));
        // Shorter than declared.
        let e = decode_idx_bytes(&gz(&raw[..raw.len() - 2])).unwrap_err();
        assert!(matches!(
            e,
            DatasetError::Idx {
                kind: IdxFormatError::LengthMismatch {
                    expected: 6,
                    found: 4,
                    ..
                },
                ..
            }
        ));
        // A truncated header inside a valid stream.
        let e = decode_idx_bytes(&gz(&raw[..6])).unwrap_err();
        assert!(matches!(
            e,
            DatasetError::Idx {
                kind: IdxFormatError::TruncatedHeader {
                    expected: 12,
                    found: 6
                },
                ..
            }
        ));
    }

    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        // 60000 x 28 x 28 declared in a stream of a few dozen bytes: more than deflate can hold.
        let mut header = vec![0, 0, 8, 3];
        for d in [60_000u32, 28, 28] {
            header.extend_from_slice(&d.to_be_bytes());
        }
        let e = decode_idx_bytes(&gz(&header)).unwrap_err();
        assert!(
            matches!(
                e,
                DatasetError::Idx {
                    kind: IdxFormatError::TooLarge {
                        declared: 47_040_000,
                        ..
                    },
                    ..
                }
            ),
            "{e:?}"
        );
        // Above the reader's own limit, raw or gzipped.
        let mut huge = vec![0, 0, 8, 2];
        for d in [1u32 << 16, 1 << 15] {
            huge.extend_from_slice(&d.to_be_bytes());
        }
        for bytes in [huge.clone(), gz(&huge)] {
            let e = decode_idx_bytes(&bytes).unwrap_err();
            assert!(
                matches!(
                    e,
                    DatasetError::Idx {
                        kind: IdxFormatError::TooLarge {
                            limit: MAX_IDX_PAYLOAD,
                            ..
                        },
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }

    #[test]
    fn hand_built_arrays_that_disagree_are_an_error() {
        let bad = IdxArray {
            dims: vec![2, 2],
            data: vec![0; 3],
        };
        assert!(bad.into_ndarray().is_err());
    }

    #[test]
    fn encode_rejects_bad_arguments() {
        assert!(encode_idx(&[], &[]).is_err());
        assert!(encode_idx(&[2, 2], &[0; 3]).is_err());
        assert!(encode_idx(&[1usize << 33, 0], &[]).is_err());
    }
}
