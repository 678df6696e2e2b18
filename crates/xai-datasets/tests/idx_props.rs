//! Property tests of the IDX codec: round trip, truncation, random bytes.

use proptest::prelude::*;
use xai_datasets::{decode_idx_bytes, encode_idx, parse_idx, DatasetError, IdxArray};

/// Dimension sizes (1 to 4 dims, small) with matching random data.
fn dims_and_data() -> impl Strategy<Value = (Vec<usize>, Vec<u8>)> {
    prop::collection::vec(0usize..7, 1..=4).prop_flat_map(|dims| {
        let n: usize = dims.iter().product();
        (Just(dims), prop::collection::vec(any::<u8>(), n))
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// An accepted array holds exactly the bytes its dimensions declare; a refused one is an IDX
/// format error (or, for gzipped input, a gzip error), never another kind.
fn check(r: Result<IdxArray, DatasetError>, gzipped: bool) -> Result<(), TestCaseError> {
    match r {
        Ok(arr) => {
            prop_assert!(!gzipped, "random bytes after a gzip magic were accepted");
            let n: Option<usize> = arr.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            prop_assert_eq!(n, Some(arr.data.len()), "dims {:?}", arr.dims);
        }
        Err(DatasetError::Idx { .. }) => {}
        Err(DatasetError::Gzip { .. }) if gzipped => {}
        Err(e) => prop_assert!(false, "unexpected error kind: {:?}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip((dims, data) in dims_and_data()) {
        let bytes = encode_idx(&dims, &data).unwrap();
        prop_assert_eq!(bytes.len(), 4 + 4 * dims.len() + data.len());
        let arr = parse_idx(&bytes).unwrap();
        prop_assert_eq!(&arr, &IdxArray { dims: dims.clone(), data: data.clone() });
        // Gzipped bytes decode to the same array.
        let arr_gz = decode_idx_bytes(&gzip(&bytes)).unwrap();
        prop_assert_eq!(arr_gz, arr.clone());
        // And into an ndarray of that shape.
        let nd = arr.into_ndarray().unwrap();
        prop_assert_eq!(nd.shape(), &dims[..]);
    }

    #[test]
    fn truncated_is_an_error((dims, data) in dims_and_data(), cut in any::<prop::sample::Index>()) {
        let bytes = encode_idx(&dims, &data).unwrap();
        let keep = cut.index(bytes.len()); // 0..len: always strictly shorter
        let err = parse_idx(&bytes[..keep]).unwrap_err();
        prop_assert!(matches!(err, DatasetError::Idx { .. }), "{:?}", err);
        // A truncated gzip stream is an error as well.
        let gz = gzip(&bytes);
        let keep = cut.index(gz.len());
        prop_assert!(decode_idx_bytes(&gz[..keep]).is_err());
    }

    #[test]
    fn extended_is_an_error((dims, data) in dims_and_data(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = encode_idx(&dims, &data).unwrap();
        bytes.extend_from_slice(&extra);
        prop_assert!(parse_idx(&bytes).is_err());
    }

    #[test]
    fn random_bytes_give_a_consistent_array_or_a_format_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        check(parse_idx(&bytes), false)?;
        check(decode_idx_bytes(&bytes), false)?;
        // With a valid-looking header prefix too.
        let mut b = vec![0u8, 0, 8];
        b.extend_from_slice(&bytes);
        check(parse_idx(&b), false)?;
        // And behind a gzip magic (random bytes are never a valid gzip stream).
        let mut g = vec![0x1fu8, 0x8b];
        g.extend_from_slice(&bytes);
        check(decode_idx_bytes(&g), true)?;
    }

    #[test]
    fn corrupted_gzip_never_panics((dims, data) in dims_and_data(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut gz = gzip(&encode_idx(&dims, &data).unwrap());
        let i = pos.index(gz.len());
        gz[i] = byte;
        if let Ok(arr) = decode_idx_bytes(&gz) {
            // Only possible when the corruption left the content intact (e.g. header fields).
            prop_assert_eq!(arr.data.len(), arr.dims.iter().product::<usize>());
        }
    }
}
