//! Which project ids exist, asked of the backend once per id.

use rpa_ml_shared::backend::BackendDb;

/// Project ids the backend has been seen to hold. Projects are created,
/// not deleted, so an id seen once is remembered and the hot path skips
/// the backend query; an id not yet seen is always looked up. (A project
/// deleted later is still answered per project by the worker.)
#[derive(Default)]
pub struct KnownProjects {
    ids: std::sync::RwLock<std::collections::HashSet<i64>>,
}

impl KnownProjects {
    /// The subset of `ids` that exist.
    pub async fn existing(
        &self,
        backend: &BackendDb,
        ids: &[i64],
    ) -> Result<std::collections::HashSet<i64>, rpa_ml_shared::backend::BackendError> {
        let unseen: Vec<i64> = match self.ids.read() {
            Ok(known) => ids
                .iter()
                .copied()
                .filter(|id| !known.contains(id))
                .collect(),
            Err(_) => ids.to_vec(),
        };
        let found = if unseen.is_empty() {
            Default::default()
        } else {
            backend.existing_projects(&unseen).await?
        };
        if !found.is_empty()
            && let Ok(mut known) = self.ids.write()
            && known.len() < 5_000_000
        {
            known.extend(found.iter().copied());
        }
        let unseen: std::collections::HashSet<i64> = unseen.into_iter().collect();
        Ok(ids
            .iter()
            .copied()
            .filter(|id| !unseen.contains(id) || found.contains(id))
            .collect())
    }
}
