//! The only module that touches namespaces, mounts, pivot_root and process creation.
pub mod spec;
