//! Image removal guarded by the containers that use the image: a container's rootfs is an
//! overlay over the image's layer directories, so those must outlive it.

use std::sync::Arc;

use super::Runtime;
use crate::error::{Error, Result};
use crate::image::normalize_reference;

impl Runtime {
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        let images = Arc::clone(&self.images);
        let r = reference.to_string();
        let Some(image) = tokio::task::spawn_blocking(move || images.resolve(&r))
            .await
            .expect("image lookup does not panic")
        else {
            return Ok(());
        };
        let only_untags = image.repo_tags.len() > 1
            && normalize_reference(reference).is_ok_and(|n| image.repo_tags.contains(&n));
        if !only_untags {
            let users: Vec<String> = {
                let st = self.state.lock().unwrap();
                st.containers
                    .values()
                    .filter(|c| c.image_id == image.id)
                    .map(|c| c.id.clone())
                    .collect()
            };
            if let Some(user) = users.first() {
                return Err(Error::FailedPrecondition(format!(
                    "image {} is used by {} container(s), e.g. {user}; remove them first",
                    image.id,
                    users.len()
                )));
            }
        }
        let images = Arc::clone(&self.images);
        let r = reference.to_string();
        tokio::task::spawn_blocking(move || images.remove(&r))
            .await
            .expect("image removal does not panic")?;
        Ok(())
    }
}
