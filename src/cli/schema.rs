//! `xp schema`: print the manifest JSON schema.

use std::io::Write;

use super::{Context, Result, exit};
use crate::manifest::schema::schema_text;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, _ctx: &Context) -> Result<u8> {
    std::io::stdout()
        .lock()
        .write_all(schema_text().as_bytes())?;
    Ok(exit::OK)
}
