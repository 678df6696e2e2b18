//! Fuzz target: the IDX reader, raw and gzipped (`xai_datasets::decode_idx_bytes`, and
//! `read_idx_images`/`read_idx_labels` on files for some cases).
//!
//! Seeds are valid IDX arrays of 1 to 3 small dimensions, raw, gzipped in one member or in
//! several. Mutations: a declared dimension set to an edge value (0, ±1, 2^31, u32::MAX, ...),
//! the number of dimensions or the type byte changed, payload bytes added or removed, the
//! uncompressed content mutated and compressed again (so that the gzip layer is valid and the
//! IDX header is not), the gzip header, body or trailer mutated, members appended, and plain
//! byte edits. An accepted array must hold exactly the bytes its dimensions declare.

use rand::rngs::StdRng;
use rand::Rng;
use xai_datasets::{decode_idx_bytes, encode_idx, read_idx_images, read_idx_labels};
use xai_fuzz::{fuzz, gzip, interesting_u64, mutate_bytes, nudge_u64, Outcome};

#[global_allocator]
static ALLOC: xai_fuzz::LimitAlloc = xai_fuzz::LimitAlloc;

fn valid_idx(rng: &mut StdRng) -> (Vec<usize>, Vec<u8>) {
    let rank = rng.gen_range(1..=3);
    let dims: Vec<usize> = (0..rank).map(|_| rng.gen_range(0..6)).collect();
    let n: usize = dims.iter().product();
    let data: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    let bytes = encode_idx(&dims, &data).expect("a valid IDX array");
    (dims, bytes)
}

/// Structure-aware edits of a raw IDX file.
fn mutate_idx(rng: &mut StdRng, b: &mut Vec<u8>) {
    let ndims = b.get(3).copied().unwrap_or(0) as usize;
    match rng.gen_range(0..6) {
        0 if ndims > 0 && b.len() >= 4 + 4 * ndims => {
            let d = rng.gen_range(0..ndims);
            let at = 4 + 4 * d;
            let old = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let new = nudge_u64(rng, old as u64) as u32;
            b[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
        1 if b.len() > 3 => b[3] = [0, 1, 2, 3, 4, 255][rng.gen_range(0..6)],
        2 if b.len() > 2 => b[2] = [0x08, 0x09, 0x0b, 0x0d, 0x00][rng.gen_range(0..5)],
        3 => {
            let k = rng.gen_range(1..8);
            b.extend((0..k).map(|_| rng.gen::<u8>()));
        }
        4 => {
            let k = rng.gen_range(0..=b.len().min(8));
            b.truncate(b.len() - k);
        }
        _ => {
            let ops = rng.gen_range(1..4);
            mutate_bytes(rng, b, ops);
        }
    }
}

/// A gzipped variant of `raw` with structure-aware damage to the gzip layer.
fn gzip_variant(rng: &mut StdRng, raw: &[u8]) -> Vec<u8> {
    match rng.gen_range(0..7) {
        // Valid gzip around mutated IDX content (reaches the header checks after inflating).
        0 | 1 => {
            let mut inner = raw.to_vec();
            mutate_idx(rng, &mut inner);
            gzip(&inner)
        }
        // Split across several members (valid), perhaps with a trailing partial member.
        2 => {
            let cut = rng.gen_range(0..=raw.len());
            let mut out = gzip(&raw[..cut]);
            out.extend(gzip(&raw[cut..]));
            if rng.gen() {
                let extra = gzip(&[rng.gen()]);
                let keep = rng.gen_range(0..extra.len());
                out.extend(&extra[..keep]);
            }
            out
        }
        // A header declaring a huge array over a short gzip body.
        3 => {
            let mut inner = raw.to_vec();
            if inner.len() >= 8 {
                let v = interesting_u64(rng) as u32;
                inner[4..8].copy_from_slice(&v.to_be_bytes());
            }
            let mut out = gzip(&inner);
            if rng.gen() {
                // ... and a damaged trailer (CRC / ISIZE).
                let n = out.len();
                let i = rng.gen_range(n.saturating_sub(8)..n);
                out[i] ^= 0x55;
            }
            out
        }
        // Gzip header flags and fields (FEXTRA, FNAME, ...).
        4 => {
            let mut out = gzip(raw);
            out[3] = rng.gen();
            out
        }
        // Trailing bytes after the stream.
        5 => {
            let mut out = gzip(raw);
            let k = rng.gen_range(1..6);
            out.extend((0..k).map(|_| rng.gen::<u8>()));
            out
        }
        _ => {
            let mut out = gzip(raw);
            let ops = rng.gen_range(1..4);
            mutate_bytes(rng, &mut out, ops);
            out
        }
    }
}

fn check_accepted(arr: &xai_datasets::IdxArray) -> Result<(), String> {
    let declared = arr.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if declared != Some(arr.data.len()) {
        return Err(format!(
            "accepted dims {:?} with {} data bytes",
            arr.dims,
            arr.data.len()
        ));
    }
    Ok(())
}

#[test]
fn fuzz_idx_reader() {
    xai_fuzz::configure_alloc_limit();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.idx");
    fuzz("idx", 6000, |rng| {
        let (dims, raw) = valid_idx(rng);
        let unchanged = rng.gen_range(0..20) == 0;
        let bytes = if unchanged {
            if rng.gen() {
                gzip(&raw)
            } else {
                raw.clone()
            }
        } else if rng.gen() {
            gzip_variant(rng, &raw)
        } else {
            let mut b = raw.clone();
            mutate_idx(rng, &mut b);
            b
        };
        let result = decode_idx_bytes(&bytes);
        if unchanged {
            let arr = result
                .as_ref()
                .map_err(|e| format!("a valid file was refused: {e}"))?;
            if arr.dims != dims || encode_idx(&arr.dims, &arr.data).ok() != Some(raw) {
                return Err("a valid file read back different".into());
            }
        }
        // Every 16th case goes through the file readers too (rank checks, path in errors).
        if rng.gen_range(0..16) == 0 {
            std::fs::write(&file, &bytes).map_err(|e| e.to_string())?;
            let images = read_idx_images(&file);
            let labels = read_idx_labels(&file);
            if let Ok(a) = &images {
                if a.len() != a.shape().iter().product::<usize>() {
                    return Err("image array length".into());
                }
            }
            if let (Ok(_), Ok(_)) = (&images, &labels) {
                return Err("a file read both as images and as labels".into());
            }
        }
        match result {
            Ok(arr) => {
                check_accepted(&arr)?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                if e.to_string().is_empty() {
                    return Err("an empty error message".into());
                }
                Ok(Outcome::Rejected)
            }
        }
    });
}
