//! `imagePullPolicy`, with the defaults Kubernetes applies when a manifest
//! leaves it out.

use serde::Deserialize;

/// A container's `imagePullPolicy`. Deserialising rejects any other value,
/// so a typo is a manifest error naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PullPolicy {
    /// Pull every time the pod is run (a pull of an image already stored
    /// only checks the registry).
    Always,
    /// Pull only when the image is not in podd.
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

impl PullPolicy {
    /// The policy in force for `image`: the one given, else Kubernetes'
    /// default, `Always` when the tag is `latest` or there is neither tag nor
    /// digest, `IfNotPresent` otherwise.
    pub fn effective(given: Option<PullPolicy>, image: &str) -> PullPolicy {
        given.unwrap_or_else(|| match image_tag(image) {
            Some("latest") => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        })
    }
}

/// The tag of an image reference as Kubernetes' `ParseImageName` sees it:
/// `latest` when there is neither tag nor digest, `None` for a bare digest.
fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' before the last '/' is a registry port, not a tag.
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(i) => Some(&name[last + i + 1..]),
        None if digest.is_none() => Some("latest"),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::PullPolicy::{self, Always, IfNotPresent, Never};

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_like_kubernetes() {
        let d = |image: &str| PullPolicy::effective(None, image);
        assert_eq!(d("busybox"), Always);
        assert_eq!(d("busybox:latest"), Always);
        assert_eq!(d("127.0.0.1:5000/t/busybox"), Always);
        assert_eq!(d("127.0.0.1:5000/t/busybox:latest"), Always);
        assert_eq!(d("127.0.0.1:5000/t/busybox:1"), IfNotPresent);
        assert_eq!(d("localhost/podd/busybox:1.36"), IfNotPresent);
        assert_eq!(d(&format!("busybox@{DIGEST}")), IfNotPresent);
        assert_eq!(d(&format!("localhost:5000/busybox@{DIGEST}")), IfNotPresent);
        assert_eq!(d(&format!("busybox:latest@{DIGEST}")), Always);
        assert_eq!(d(&format!("busybox:1@{DIGEST}")), IfNotPresent);
    }

    #[test]
    fn a_given_policy_wins() {
        assert_eq!(PullPolicy::effective(Some(Never), "busybox"), Never);
        assert_eq!(
            PullPolicy::effective(Some(IfNotPresent), "busybox:latest"),
            IfNotPresent
        );
        assert_eq!(PullPolicy::effective(Some(Always), "busybox:1"), Always);
    }
}
