//! What every request handler of the dashboard shares: the store's path, the guard's settings,
//! and a pool of read-only store connections used off the async threads.

use std::sync::{Arc, Mutex};

use super::data::{Answer, ApiError};
use crate::store::Store;

/// What every handler shares.
pub(super) struct App {
    pub db: std::path::PathBuf,
    /// Required in every request, where set.
    pub token: Option<String>,
    /// Whether the server listens on a loopback address only (then the Host header is checked).
    pub loopback: bool,
    /// Read-only connections kept for the next requests.
    pub pool: Mutex<Vec<Store>>,
    /// Sampling runs a model: one at a time.
    pub sampling: Mutex<()>,
}

impl App {
    /// Runs `f` on a pooled read-only connection, on a blocking thread.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Answer<T> + Send + 'static,
    ) -> Answer<T> {
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let store = match app.pool.lock().ok().and_then(|mut p| p.pop()) {
                Some(s) => s,
                None => Store::open_read_only(&app.db)?,
            };
            let out = f(&store);
            if let Ok(mut pool) = app.pool.lock()
                && pool.len() < 8
            {
                pool.push(store);
            }
            out
        })
        .await
        .map_err(|e| ApiError::internal(format!("the request's reader stopped: {e}")))?
    }
}
