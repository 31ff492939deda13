//! `xp export model`: a run's checkpoint as an ONNX file, verified before it is read and
//! written whole or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::super::{Context, Error, Result, exit};
use crate::train;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: run-N, N, or a prefix of its content key.
    run: String,
    /// `best` (lowest validation loss), `last`, or a step number.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// The file format; ONNX is the one there is.
    #[arg(long, value_enum, default_value = "onnx")]
    format: ModelFormat,
    /// The file to write (default: RUN.onnx in this folder, RUN as run-N).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModelFormat {
    Onnx,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    let store = ctx.open_synced_store()?;
    let run = store.run(&args.run)?;
    let checkpoints = store.checkpoints(run.id)?;
    let chosen = crate::store::checkpoints::choose(&checkpoints, &args.checkpoint)
        .map_err(|m| Error::Usage(format!("{}: {m}", run.name())))?;
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.onnx", run.name())));
    if path.exists() && !args.force {
        return Err(Error::Usage(format!(
            "{} exists; --force replaces it",
            path.display()
        )));
    }
    let dir = store.checkpoint_path(&chosen.path);
    // A damaged or missing checkpoint is the user's to fix (another checkpoint, or the run's
    // folder copied back): nothing is written.
    train::verify_checkpoint(&dir, chosen.bytes.max(0) as u64, &chosen.blake3).map_err(|e| {
        Error::Usage(format!(
            "{} at step {}: {e}; nothing was exported",
            run.name(),
            chosen.step
        ))
    })?;
    let origin = train::export::Origin {
        run: &run.name(),
        blake3: &chosen.blake3,
    };
    let bytes = train::export::onnx(&run.spec.config, &dir, &origin)
        .map_err(|e| Error::Failed(format!("{}: {e}", run.name())))?;
    write_whole(&path, &bytes)
        .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
    writeln!(
        std::io::stdout().lock(),
        "wrote {}: {} at step {} (checkpoint {}), ONNX opset {}, {} bytes",
        path.display(),
        run.name(),
        chosen.step,
        &chosen.blake3[..12.min(chosen.blake3.len())],
        crate::onnx::OPSET,
        bytes.len()
    )?;
    Ok(exit::OK)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so that a
/// failure (a full disk, a kill) leaves either the old file or none, never half of one.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
