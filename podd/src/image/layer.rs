//! A layer blob (gzip, zstd or plain tar) unpacked into a directory, checked against its diff_id.
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::unpack::unpack_tar;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Unpacks the layer blob at `blob` into the existing empty directory `dest` and checks that
/// the uncompressed stream has digest `diff_id`. On error `dest` may hold partial content;
/// the caller owns and removes it.
pub(crate) fn unpack_layer_blob(
    blob: &Path,
    blob_digest: &Digest,
    diff_id: &Digest,
    dest: &Path,
) -> Result<(), ImageError> {
    let file = File::open(blob).map_err(|e| ImageError::io("open layer blob", blob, e))?;
    let mut buffered = BufReader::new(file);
    let head = buffered
        .fill_buf()
        .map_err(|e| ImageError::io("read layer blob", blob, e))?;
    let stream: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(MultiGzDecoder::new(buffered))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ImageError::io("start zstd decoder for layer blob", blob, e))?,
        )
    } else {
        Box::new(buffered)
    };
    let label = format!("{blob_digest} (diff_id {diff_id})");
    let hashing = unpack_tar(HashingReader::new(stream), dest, &label)?;
    let (actual, _) = hashing
        .finish()
        .map_err(|e| ImageError::io("read layer blob", blob, e))?;
    if &actual != diff_id {
        return Err(ImageError::DigestMismatch {
            what: "uncompressed layer (diff_id)",
            expected: diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}
