//! `xp completions`: shell completion scripts.

use clap::CommandFactory;

use super::{Cli, Context, Result, exit};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

pub fn run(args: Args, _ctx: &Context) -> Result<u8> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "xp",
        &mut std::io::stdout().lock(),
    );
    Ok(exit::OK)
}
