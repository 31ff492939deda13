//! What every subcommand is given: the store's path and whether to colour, with the ways
//! commands open the store.

use std::path::PathBuf;

use super::Result;
use crate::store::Store;

/// Settings shared by every subcommand.
pub struct Context {
    pub db: PathBuf,
    pub color: bool,
}

impl Context {
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open(&self.db)?)
    }

    pub fn open_existing_store(&self) -> Result<Store> {
        Ok(Store::open_existing(&self.db)?)
    }

    /// An existing store, with what Slurm tasks recorded merged in first ([`sync`]).
    pub fn open_synced_store(&self) -> Result<Store> {
        let mut store = self.open_existing_store()?;
        sync(&mut store);
        Ok(store)
    }
}

/// Merges what Slurm tasks recorded since the last look into the store, for a command that
/// reads it. Not reaching Slurm is no reason to refuse to show what the store has: it is only
/// logged.
pub fn sync(store: &mut Store) {
    if let Err(e) = crate::exec::slurm::sync_before_reading(store) {
        tracing::warn!("the store may be behind what Slurm tasks recorded: {e}");
    }
}
