//! podd: a Kubernetes CRI pod runtime.
pub mod image;
pub mod isolate;
