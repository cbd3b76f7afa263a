//! Pulling images from OCI registries (distribution protocol, through oci-client) into the
//! image store, through the same ingestion path as OCI-layout import.
mod auth;
mod client;
mod error;
mod hosts;
mod pull;

pub use auth::{Credentials, CriAuth, PullAuth};
pub use error::{Kind, RegistryError};
pub use hosts::{Endpoint, Registries};
pub use pull::{Progress, Puller};

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
