//! `xp completions`: shell completion scripts.

use super::{Result, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// Writes the completion script of `xp` (the whole command line, which the dispatcher passes
/// in) for the shell asked for.
pub fn run(args: Args, xp: &mut clap::Command) -> Result<u8> {
    clap_complete::generate(args.shell, xp, "xp", &mut std::io::stdout().lock());
    Ok(exit::OK)
}
