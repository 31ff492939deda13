//! xp: manifest → validated plan → queue → trainer → store → reports (terminal and dashboard).

pub mod cli;
pub mod count;
pub mod data;
pub mod early_stop;
pub mod exec;
pub mod forecast;
pub mod manifest;
pub mod onnx;
pub mod report;
pub mod search;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod tpe;
pub mod train;
pub mod ui;
