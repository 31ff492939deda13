//! xp: manifest → validated plan → queue → trainer → store → reports (terminal and dashboard).

pub mod cli;
pub mod data;
pub mod exec;
pub mod manifest;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod train;
pub mod ui;
