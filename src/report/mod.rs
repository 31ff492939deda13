//! Reports as values: what `xp status`, `xp compare`, `xp export`, `xp show` and the dashboard
//! show, computed from the store and returned as plain (serialisable) data. The command line
//! only chooses how to print them, and the dashboard serves the same values.

pub mod compare;
pub mod eta;
pub mod search;
pub mod settings;
pub mod status;
pub mod trials;
