//! Image reference parsing and normalisation, following the docker/containerd rules
//! (github.com/distribution/reference `ParseNormalizedNamed`).
use super::digest::is_lower_hex;
use super::error::ImageError;

pub(crate) const DEFAULT_DOMAIN: &str = "docker.io";
pub(crate) const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised reference: `domain/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `r` and fills in the default domain and `library/` prefix. No tag is added.
    pub fn parse(r: &str) -> Result<Reference, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: r.to_string(),
            reason: reason.to_string(),
        };
        if r.is_empty() {
            return Err(invalid("reference is empty"));
        }
        if is_lower_hex(r, 64) {
            return Err(invalid(
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }
        let (rest, digest) = match r.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(|reason| invalid(&reason))?;
                (rest, Some(digest.to_string()))
            }
            None => (r, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(&format!(
                        "tag {tag:?} must be 1-128 characters of [A-Za-z0-9_.-] not starting with '.' or '-'"
                    )));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (mut domain, mut path) = split_domain(name);
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !path.contains('/') {
            path = format!("{OFFICIAL_REPO_PREFIX}{path}");
        }
        if !valid_domain(&domain) {
            return Err(invalid(&format!(
                "registry host {domain:?} is not a valid host[:port]"
            )));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(invalid(&format!(
                "repository path component {bad:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
            )));
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(invalid("repository name is longer than 255 characters"));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, the repository name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises an image reference the way docker and containerd do:
/// `busybox` -> `docker.io/library/busybox:latest`, `foo/bar` -> `docker.io/foo/bar:latest`,
/// `localhost/podd/busybox` -> `localhost/podd/busybox:latest`; a reference with a tag or a
/// digest keeps it (no `:latest` is added to `name@sha256:...`). Invalid references are errors.
pub fn normalize_reference(r: &str) -> Result<String, ImageError> {
    let mut reference = Reference::parse(r)?;
    if reference.tag.is_none() && reference.digest.is_none() {
        reference.tag = Some("latest".to_string());
    }
    Ok(reference.to_string())
}

/// Splits `name` into (domain, remainder): the first component is a registry host when it
/// contains '.' or ':', is `localhost`, or has upper-case letters.
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    }
}

pub(crate) fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(stripped) = domain.strip_prefix('[') {
        // [ipv6]:port
        let Some((addr, after)) = stripped.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("ok", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        if i >= b.len() || !alnum(b[i]) {
            return false;
        }
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if word(c))
        && chars.all(|c| word(c) || c == '.' || c == '-')
        && tag.len() <= TAG_MAX
}

fn check_digest(digest: &str) -> Result<(), String> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} has no \"algorithm:\" prefix"))?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("digest algorithm {alg:?} is not supported")),
    };
    if !is_lower_hex(hex, len) {
        return Err(format!(
            "digest {digest:?} must have {len} lowercase hex characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v1", "docker.io/foo/bar/baz:v1"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("localhost/podd/busybox", "localhost/podd/busybox:latest"),
            ("localhost/busybox", "localhost/busybox:latest"),
            ("localhost:5000/busybox", "localhost:5000/busybox:latest"),
            ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
            ("quay.io/a/b:c", "quay.io/a/b:c"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("[::1]:5000/x", "[::1]:5000/x:latest"),
            ("a-b__c/d_e.f--g", "docker.io/a-b__c/d_e.f--g:latest"),
            ("localhost:5000", "docker.io/library/localhost:5000"),
        ];
        for (input, want) in cases {
            assert_eq!(&normalize_reference(input).unwrap(), want, "input {input}");
        }
        assert_eq!(
            normalize_reference(&format!("busybox@{D}")).unwrap(),
            format!("docker.io/library/busybox@{D}")
        );
        assert_eq!(
            normalize_reference(&format!("127.0.0.1:5000/x:1@{D}")).unwrap(),
            format!("127.0.0.1:5000/x:1@{D}")
        );
    }

    #[test]
    fn normalisation_rejects_invalid() {
        let bad = [
            "",
            "Busybox",
            "docker.io/Foo/bar",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            "/busybox",
            "busybox/",
            "foo//bar",
            "foo/-bar",
            "foo/bar-",
            "foo/bar..baz",
            "foo/bar___baz",
            "bad host!/x",
            "-host.com/x",
            "host.com:port/x",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "busybox@",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "busy box",
        ];
        for input in bad {
            assert!(
                normalize_reference(input).is_err(),
                "{input:?} should be rejected"
            );
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(normalize_reference(&long).is_err());
        let long_tag = format!("a:{}", "b".repeat(129));
        assert!(normalize_reference(&long_tag).is_err());
    }

    #[test]
    fn parse_splits_parts() {
        let r = Reference::parse("127.0.0.1:5000/x/y:1").unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "x/y");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(r.name(), "127.0.0.1:5000/x/y");
        assert!(r.digest.is_none());
    }
}
