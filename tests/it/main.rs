//! The integration tests, as one test binary (one link of burn instead of one per file): each
//! module runs the real `xp` binary, or the library, against temporary folders.

mod common;
mod early_stop;
mod executors;
mod export;
mod faults;
mod fuzz_manifests;
mod imports;
mod layout;
mod manifests;
mod queue;
mod reports;
mod search;
mod store;
mod train;
mod ui;
