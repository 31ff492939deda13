//! The one place where errors become messages on stderr and exit codes.

use std::io::Write;

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::count::Count;
use crate::manifest::{self, Diagnostics};
use crate::{exec, store, ui};

/// Exit codes (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    /// A run failed, or the command could not finish (I/O, database).
    pub const FAILURE: u8 = 1;
    /// Bad input: an invalid manifest, flag, run name or database file.
    pub const BAD_INPUT: u8 = 2;
    /// Stopped by Ctrl-C (or SIGTERM): 128 + SIGINT, as shells expect.
    pub const INTERRUPTED: u8 = crate::exec::interrupts::EXIT_AT_ONCE;
}

/// Errors as the command line reports them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Ui(#[from] ui::Error),
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

impl Error {
    /// The exit code of this error.
    fn code(&self) -> u8 {
        match self {
            Error::Manifest(_) | Error::Usage(_) | Error::Query { .. } => exit::BAD_INPUT,
            Error::Store(e) | Error::Exec(exec::Error::Store(e)) if e.is_user_error() => {
                exit::BAD_INPUT
            }
            Error::Exec(exec::Error::Usage(_)) => exit::BAD_INPUT,
            Error::Ui(e) if e.is_user_error() => exit::BAD_INPUT,
            // A reader that went away (`xp runs | head`) is no failure of xp's.
            Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            _ => exit::FAILURE,
        }
    }
}

/// Prints an error to stderr (if stderr is still there) and returns its exit code.
pub fn report(error: &Error, color: bool) -> u8 {
    let mut stderr = std::io::stderr().lock();
    match error {
        Error::Manifest(manifest::Error::Invalid(diagnostics)) => {
            let _ = stderr.write_all(render_diagnostics(diagnostics, color).as_bytes());
        }
        Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Error::Query { text, column, .. } => {
            // The expression with a caret under the column, as a compiler would show it.
            let _ = writeln!(stderr, "error: {error}");
            let _ = writeln!(stderr, "  {text}");
            let _ = writeln!(stderr, "  {}^", " ".repeat(column.saturating_sub(1)));
        }
        other => {
            let _ = writeln!(stderr, "error: {other}");
        }
    }
    error.code()
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
        "error: {} is not a valid manifest: {}\n",
        diagnostics.file,
        Count::numbered("problem", n)
    ));
    out
}
