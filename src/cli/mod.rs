//! The command line: argument parsing, dispatch, and the one place errors become messages and exit codes.

mod bench;
mod chart;
mod compare;
mod completions;
mod export;
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
mod validate;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use comfy_table::{ContentArrangement, Table, presets};
use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::manifest::{self, Diagnostics, Loaded, Override};
use crate::store::{self, Store};
use crate::sweep::{self, Plan};

/// Exit codes (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    /// A run failed, or the command could not finish (I/O, database).
    pub const FAILURE: u8 = 1;
    /// Bad input: an invalid manifest, flag, run name or database file.
    pub const BAD_INPUT: u8 = 2;
    /// Stopped by Ctrl-C (or SIGTERM): 128 + SIGINT, as shells expect.
    pub const INTERRUPTED: u8 = 130;
}

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
    /// What differs between runs.
    Compare(compare::Args),
    /// List runs.
    Runs(runs::Args),
    /// Everything recorded about one run.
    Show(show::Args),
    /// Write metrics or summaries as CSV or JSON Lines.
    Export(export::Args),
    /// Measure xp itself: the run store's ingest and size.
    Bench(bench::Args),
    /// Generate text from a run's checkpoint.
    Sample(sample::Args),
    /// Print the manifest JSON schema.
    Schema(schema::Args),
    /// List hardware profiles and the one `auto` picks here.
    Profiles(profiles::Args),
    /// Print shell completions.
    Completions(completions::Args),
}

/// Errors as the command line reports them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Usage(String),
    /// Something that ran went wrong (exit 1), e.g. a benchmark's training.
    #[error("{0}")]
    Failed(String),
    /// A bad `--where` or `--sort` expression, with the column of the problem.
    #[error("{flag}: column {column}: {message}")]
    Query {
        flag: &'static str,
        text: String,
        column: usize,
        message: String,
    },
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Settings shared by every subcommand.
pub struct Context {
    pub db: PathBuf,
    pub color: bool,
}

impl Context {
    pub fn open_store(&self) -> Result<Store> {
        Ok(Store::open(&self.db)?)
    }

    pub fn open_existing_store(&self) -> Result<Store> {
        Ok(Store::open_existing(&self.db)?)
    }
}

fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn init_logging(color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("XP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

/// Runs xp with the process's arguments; returns the exit code.
pub fn main() -> ExitCode {
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
        Command::Export(a) => export::run(a, &ctx),
        Command::Bench(a) => bench::run(a, &ctx),
        Command::Compare(a) => compare::run(a, &ctx),
        Command::Runs(a) => runs::run(a, &ctx),
        Command::Show(a) => show::run(a, &ctx),
        Command::Sample(a) => sample::run(a, &ctx),
        Command::Schema(a) => schema::run(a, &ctx),
        Command::Profiles(a) => profiles::run(a, &ctx),
        Command::Completions(a) => completions::run(a, &ctx),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report(&e, &ctx)),
    }
}

/// Prints an error to stderr and returns its exit code.
fn report(error: &Error, ctx: &Context) -> u8 {
    let mut stderr = std::io::stderr().lock();
    match error {
        Error::Manifest(manifest::Error::Invalid(diagnostics)) => {
            let _ = stderr.write_all(render_diagnostics(diagnostics, ctx.color).as_bytes());
            exit::BAD_INPUT
        }
        Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Error::Query { text, column, .. } => {
            // The expression with a caret under the column, as a compiler would show it.
            let _ = writeln!(stderr, "error: {error}");
            let _ = writeln!(stderr, "  {text}");
            let _ = writeln!(stderr, "  {}^", " ".repeat(column.saturating_sub(1)));
            exit::BAD_INPUT
        }
        other => {
            let _ = writeln!(stderr, "error: {other}");
            match other {
                Error::Manifest(manifest::Error::Read { .. }) | Error::Usage(_) => exit::BAD_INPUT,
                Error::Store(e) if e.is_user_error() => exit::BAD_INPUT,
                _ => exit::FAILURE,
            }
        }
    }
}

/// Renders every problem like rustc does, then a one-line summary.
pub fn render_diagnostics(diagnostics: &Diagnostics, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for report in diagnostics.reports() {
        let _ = handler.render_report(&mut out, &report);
        out.push('\n');
    }
    let n = diagnostics.items.len();
    out.push_str(&format!(
        "error: {} is not a valid manifest: {n} problem{}\n",
        diagnostics.file,
        if n == 1 { "" } else { "s" }
    ));
    out
}

/// Loads a manifest and plans it with the environment's and flags' overrides.
pub fn load_and_plan(
    path: &std::path::Path,
    sets: &[String],
) -> Result<(Loaded, Vec<Override>, Plan)> {
    let loaded = manifest::load(path)?;
    let (overrides, problems) = manifest::overrides(std::env::vars(), sets);
    if !problems.is_empty() {
        let mut d = loaded.diagnostics();
        d.extend(problems);
        d.sort();
        return Err(manifest::Error::Invalid(d).into());
    }
    let machine = manifest::profiles::Machine::detect();
    let plan = sweep::plan(&loaded, &overrides, &machine).map_err(manifest::Error::Invalid)?;
    Ok((loaded, overrides, plan))
}

/// A table in the style every subcommand uses.
pub fn table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    t
}

/// Writes rows as a table in the common style.
pub fn write_table(
    out: &mut impl Write,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
) -> std::io::Result<()> {
    let mut t = table(header);
    for row in rows {
        t.add_row(row);
    }
    writeln!(out, "{t}")
}

/// Writes a value as pretty JSON.
pub fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(value).expect("plain data serializes")
    )
}

/// Output formats of data commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Writes rows as CSV with RFC 4180 quoting.
pub fn write_csv(
    out: &mut impl Write,
    header: &[String],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    writeln!(
        out,
        "{}",
        header
            .iter()
            .map(|h| quote(h))
            .collect::<Vec<_>>()
            .join(",")
    )?;
    for row in rows {
        writeln!(
            out,
            "{}",
            row.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",")
        )?;
    }
    Ok(())
}

/// Parses a `--where` expression and compiles it to SQL, or says where it is wrong.
pub fn compile_where(text: &str) -> Result<store::query::Sql> {
    let fail = |column: usize, message: String| Error::Query {
        flag: "--where",
        text: text.to_string(),
        column,
        message,
    };
    let expr = sweep::Expr::parse(text).map_err(|e| fail(e.column, e.message))?;
    store::query::compile(&expr).map_err(|e| fail(e.column, e.message))
}

/// Which runs a listing command reads: `--experiment`, `--status`, `--where`.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Only runs of this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only runs in this state.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(store::STATUSES))]
    status: Option<String>,
    /// Only runs matching this expression over config keys, summary metrics and run fields,
    /// e.g. "model.ffn.unit = 'glu' and (best_val_loss < 1.6 or train.lr >= 1e-3)".
    #[arg(long = "where", value_name = "EXPR")]
    condition: Option<String>,
}

impl Selection {
    /// The matching runs with their summaries, in the order of `sort` (then by id).
    pub fn query(
        &self,
        store: &Store,
        sort: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<store::Listed>> {
        let condition = self.condition.as_deref().map(compile_where).transpose()?;
        let order = sort.map(compile_sort).transpose()?;
        let filter = store::RunFilter {
            experiment: self.experiment.clone(),
            status: self.status.clone(),
            newest_first: false,
            limit,
        };
        Ok(store.query(&filter, condition.as_ref(), order.as_ref())?)
    }
}

/// Compiles a `--sort` key, or says what is wrong with it.
pub fn compile_sort(text: &str) -> Result<store::query::Sql> {
    store::query::order_by(text).map_err(|e| Error::Query {
        flag: "--sort",
        text: text.to_string(),
        column: e.column,
        message: e.message,
    })
}

/// Seconds as a short duration: "42s", "3m 05s", "2h 10m".
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// 1234567 → "1.23M".
pub fn si(n: f64) -> String {
    let (v, unit) = if n >= 1e9 {
        (n / 1e9, "G")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "k")
    } else {
        return format!("{n}");
    };
    format!("{v:.2}{unit}")
}
