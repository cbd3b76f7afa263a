//! podd: a Kubernetes CRI pod runtime.
//!
//! `server` decodes and validates CRI requests and maps errors to gRPC codes; `runtime` holds
//! pods and containers and their state machines; `isolate` is the only place that touches
//! namespaces, mounts and process creation; `image` is the content store and unpacker; `store`
//! persists records atomically.

pub mod config;
pub mod container;
pub mod error;
pub mod image;
pub mod isolate;
pub mod net;
pub mod pod;
pub mod process;
pub mod runtime;
pub mod server;
pub mod store;
