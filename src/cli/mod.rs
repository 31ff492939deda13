//! The command line: argument parsing and dispatch. Errors become messages and exit codes in
//! [`error`]; the output helpers every subcommand shares are in [`output`].

mod bench;
mod cancel;
mod chart;
mod compare;
mod completions;
mod context;
mod error;
mod export;
mod load;
mod output;
mod plan;
mod profiles;
mod progress;
mod resume;
mod run;
mod runs;
mod sample;
mod schema;
mod show;
mod status;
mod sync;
mod ui;
mod validate;
mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use context::Context;
pub use error::{Error, Result, exit, render_diagnostics};

#[derive(Debug, Parser)]
#[command(
    name = "xp",
    version,
    about = "Run, record and compare small language-model experiments",
    max_term_width = 100
)]
pub struct Cli {
    /// The run store (SQLite).
    #[arg(
        long,
        global = true,
        env = "XP_DB",
        default_value = "runs.db",
        value_name = "PATH"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a manifest and report every problem at once.
    Validate(validate::Args),
    /// Show the runs a manifest would execute, before any training.
    Plan(plan::Args),
    /// Plan a manifest, queue its runs and execute them.
    Run(run::Args),
    /// Resume one interrupted, failed or orphaned run from its last checkpoint.
    Resume(resume::Args),
    /// What is queued, running, done and failed.
    Status(status::Args),
    /// Merge what Slurm tasks recorded into the store (reading commands do it first too).
    Sync(sync::Args),
    /// Cancel runs that have not ended (their Slurm tasks too).
    Cancel(cancel::Args),
    /// What differs between runs.
    Compare(compare::Args),
    /// List runs.
    Runs(runs::Args),
    /// Everything recorded about one run.
    Show(show::Args),
    /// Write metrics or summaries as CSV or JSON Lines, or a run's model as ONNX.
    Export(export::Args),
    /// Measure xp itself: the run store's ingest and size, and training speed.
    Bench(bench::Args),
    /// Generate text from a run's checkpoint.
    Sample(sample::Args),
    /// Print the manifest JSON schema.
    Schema(schema::Args),
    /// List hardware profiles and the one `auto` picks here.
    Profiles(profiles::Args),
    /// Serve a web dashboard of the store: runs, curves, the sweep, live while runs train.
    Ui(ui::Args),
    /// Print shell completions.
    Completions(completions::Args),
    /// Train runs for another xp: a worker of `xp run --jobs N`, or a Slurm array task.
    #[command(hide = true)]
    Worker(worker::Args),
}

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn init_logging(color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("XP_LOG")
        // The Vulkan loader's own messages at instance creation ("Found no drivers!" on every
        // machine without a Vulkan driver) come through wgpu-hal as errors whenever xp looks
        // for GPUs, which planning does; no GPU is not an error there (`xp profiles` says what
        // was found). `XP_LOG` shows them.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,wgpu_hal::vulkan::instance=off")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

/// Runs xp with the process's arguments; returns the exit code.
/// Mesa's device-select Vulkan layer connects to the Wayland and X displays to put the
/// desktop's GPU first, and on every machine without a display (servers, CI) prints
/// `XDG_RUNTIME_DIR is invalid` to stderr each time a Vulkan instance starts — which xp does to
/// find the GPUs for profiles. xp orders GPUs itself (`Machine::hardware_gpus`), so the layer
/// is turned off unless the user set `NODEVICE_SELECT` themselves.
fn quiet_vulkan_layers() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: called first thing in `main`, before xp starts any thread.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

pub fn main() -> ExitCode {
    quiet_vulkan_layers();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::OK
            });
        }
    };
    let color = color_enabled();
    init_logging(color);
    let ctx = Context { db: cli.db, color };
    let result = match cli.command {
        Command::Validate(a) => validate::run(a, &ctx),
        Command::Plan(a) => plan::run(a, &ctx),
        Command::Run(a) => run::run(a, &ctx),
        Command::Resume(a) => resume::run(a, &ctx),
        Command::Status(a) => status::run(a, &ctx),
        Command::Sync(a) => sync::run(a, &ctx),
        Command::Cancel(a) => cancel::run(a, &ctx),
        Command::Worker(a) => worker::run(a, &ctx),
        Command::Export(a) => export::run(a, &ctx),
        Command::Bench(a) => bench::run(a, &ctx),
        Command::Compare(a) => compare::run(a, &ctx),
        Command::Runs(a) => runs::run(a, &ctx),
        Command::Show(a) => show::run(a, &ctx),
        Command::Sample(a) => sample::run(a, &ctx),
        Command::Schema(a) => schema::run(a, &ctx),
        Command::Profiles(a) => profiles::run(a, &ctx),
        Command::Completions(a) => completions::run(a, &mut Cli::command()),
        Command::Ui(a) => ui::run(a, &ctx),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(error::report(&e, ctx.color)),
    }
}
