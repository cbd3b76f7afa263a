//! The one error type of the image store. Every message names what failed, on which
//! file, digest or reference, and what to do about it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file system call on the store or on an import source failed.
    #[error("{op} {}: {source} (check that the path exists, is readable and the disk is not full)", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An image reference does not follow the docker/OCI reference grammar.
    #[error("invalid image reference {reference:?}: {reason} (use a reference like \"busybox\", \"docker.io/library/busybox:1.36\" or \"name@sha256:<64 hex>\")")]
    InvalidReference { reference: String, reason: String },

    /// A digest string is malformed or uses an algorithm this store does not support.
    #[error("invalid digest {digest:?}: {reason} (only \"sha256:<64 lowercase hex>\" digests are supported)")]
    InvalidDigest { digest: String, reason: String },

    /// Content does not hash to the digest it is stored or referenced under.
    #[error("digest mismatch for {what} {expected}: content hashes to {actual} (the source is corrupt or was tampered with; re-export or re-pull the image)")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },

    /// A blob does not have the size its descriptor says.
    #[error("size mismatch for blob {digest}: descriptor says {expected} bytes, content has {actual} (the source is corrupt; re-export or re-pull the image)")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    /// The OCI layout (directory or archive) is not usable.
    #[error("invalid OCI image layout {}: {reason} (give an OCI layout directory with oci-layout, index.json and blobs/, or a tar archive of one, e.g. from `skopeo copy ... oci-archive:FILE`)", path.display())]
    InvalidLayout { path: PathBuf, reason: String },

    /// A manifest, index or config blob could not be parsed.
    #[error("cannot parse {what} {digest}: {reason} (the image is malformed or of an unsupported format; re-export it as an OCI or docker v2 image)")]
    InvalidBlob {
        what: &'static str,
        digest: String,
        reason: String,
    },

    /// A layer uses a format podd cannot unpack.
    #[error("unsupported layer {digest}: {reason} (use an image with gzip, zstd or uncompressed layers)")]
    UnsupportedLayer { digest: String, reason: String },

    /// A layer tar entry tries to write outside its layer directory or is otherwise unsafe.
    #[error("refusing layer {layer}: entry {entry:?} {reason} (the image is malformed or hostile; do not use it)")]
    UnsafeLayerEntry {
        layer: String,
        entry: String,
        reason: String,
    },

    /// Unpacking a layer entry failed for a system reason.
    #[error("unpacking layer {layer}, entry {entry:?}: {op} failed: {source} (check free disk space and that the store is on a file system supporting overlayfs xattrs and device nodes)")]
    Unpack {
        layer: String,
        entry: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The persisted image index cannot be read.
    #[error("image index {} is corrupt: {reason} (move it aside and re-import the images; blobs and layers not referenced will be cleaned at the next start)", path.display())]
    CorruptIndex { path: PathBuf, reason: String },

    /// A registry pull failed: unreachable, refused, not found or tampered content.
    #[error(transparent)]
    Registry(#[from] crate::image::registry::RegistryError),

    /// The import found no image manifest to import.
    #[error("no importable image in {}: {reason} (check that index.json lists an image manifest for linux/{})", path.display(), crate::image::layout::HOST_ARCH)]
    NothingToImport { path: PathBuf, reason: String },
}

impl ImageError {
    /// Shorthand for [`ImageError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
