//! sha256 content digests: parsing, hashing readers and verified blob copies.
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::error::ImageError;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; any other algorithm or a malformed hex part is an error.
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidDigest {
            digest: s.to_string(),
            reason: reason.to_string(),
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("missing \"algorithm:\" prefix"))?;
        if alg != "sha256" {
            return Err(invalid("unsupported algorithm"));
        }
        Digest::from_hex(hex).ok_or_else(|| invalid("expected 64 lowercase hex characters"))
    }

    /// Builds a digest from a bare hex string, if it is 64 lowercase hex characters.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        is_lower_hex(hex, 64).then(|| Digest {
            hex: hex.to_string(),
        })
    }

    /// The hex part, usable as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub(crate) fn from_hasher(h: Sha256) -> Digest {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// True when `s` is exactly `len` lowercase hex characters.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// sha256 of a byte slice.
pub fn sha256_bytes(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(data);
    Digest::from_hasher(h)
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream (e.g. tar padding after the last entry), then returns
    /// the digest of everything read and the byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Copies `src` to a new file `dst` (which must not exist), checking that the content has
/// digest `expected` and, when given, `expected_size` bytes. The copy is fsynced. On any
/// error `dst` is removed.
pub fn copy_verified(
    src: &Path,
    dst: &Path,
    expected: &Digest,
    expected_size: Option<u64>,
) -> Result<(), ImageError> {
    let result = copy_verified_inner(src, dst, expected, expected_size);
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn copy_verified_inner(
    src: &Path,
    dst: &Path,
    expected: &Digest,
    expected_size: Option<u64>,
) -> Result<(), ImageError> {
    let input = File::open(src).map_err(|e| ImageError::io("open blob", src, e))?;
    let mut out = File::options()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| ImageError::io("create blob", dst, e))?;
    let mut reader = HashingReader::new(input);
    io::copy(&mut reader, &mut out).map_err(|e| ImageError::io("copy blob", src, e))?;
    let (actual, size) = reader
        .finish()
        .map_err(|e| ImageError::io("read blob", src, e))?;
    if let Some(expected_size) = expected_size {
        if size != expected_size {
            return Err(ImageError::SizeMismatch {
                digest: expected.to_string(),
                expected: expected_size,
                actual: size,
            });
        }
    }
    if &actual != expected {
        return Err(ImageError::DigestMismatch {
            what: "blob",
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    out.flush()
        .map_err(|e| ImageError::io("write blob", dst, e))?;
    out.sync_all()
        .map_err(|e| ImageError::io("fsync blob", dst, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_sha256_lower_hex() {
        let hex = "a".repeat(64);
        assert_eq!(Digest::parse(&format!("sha256:{hex}")).unwrap().hex(), hex);
        assert!(Digest::parse(&format!("sha512:{hex}")).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&hex).is_err());
    }

    #[test]
    fn copy_verified_checks_digest_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"hello").unwrap();
        let good = sha256_bytes(b"hello");
        copy_verified(&src, &dir.path().join("ok"), &good, Some(5)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("ok")).unwrap(), b"hello");

        let bad = sha256_bytes(b"other");
        let err = copy_verified(&src, &dir.path().join("bad"), &bad, Some(5)).unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!dir.path().join("bad").exists());

        let err = copy_verified(&src, &dir.path().join("short"), &good, Some(4)).unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
        assert!(!dir.path().join("short").exists());
    }
}
