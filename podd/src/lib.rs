//! podd: a Kubernetes CRI pod runtime.
pub mod isolate;
