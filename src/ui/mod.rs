//! The web dashboard (`xp ui`): a read-only HTTP view of a run store — the runs table, curves,
//! the sweep's parallel coordinates, a run's record — updated live while runs train.
//!
//! Every request reads the store through its own read-only SQLite connection (WAL readers
//! never block the training writers); filters and sorts go through the same bound-parameter
//! compiler as `xp runs`. The page, its script and the chart library are embedded
//! ([`assets`]), so the dashboard works offline and with no build step.

mod app;
pub mod assets;
pub mod data;
mod live;
mod params;
pub mod series;
mod server;
pub mod webdriver;

pub use server::{Bound, bind};

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("the dashboard's server stopped: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl Error {
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Bind { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::AddrInUse
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::PermissionDenied
            ),
            Error::Serve(_) => false,
            Error::Store(e) => e.is_user_error(),
        }
    }
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct Options {
    pub db: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    /// Required in every request (as `?token=`, the cookie the first such request sets, or a
    /// bearer header); `xp ui` sets one whenever it listens beyond loopback.
    pub token: Option<String>,
}

/// A random token: 128 bits, hex.
pub fn new_token() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..4)
        .map(|_| format!("{:08x}", rng.random::<u32>()))
        .collect()
}
