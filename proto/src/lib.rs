//! Generated CRI types; filled in by build.rs.
