//! The `xp` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    xp::cli::main()
}
