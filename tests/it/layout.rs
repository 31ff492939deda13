//! Checks of the test suite's own shape: clap's checks of xp's command line, and every test
//! file declared as a module of this test binary (a file that is not never runs).

use std::collections::BTreeSet;

use clap::CommandFactory;

use crate::common::repo;

/// clap's own consistency checks of the command line (conflicting names, bad defaults, missing
/// value names …), which otherwise run only for the arguments a test happens to pass.
#[test]
fn the_command_line_passes_clap_debug_assert() {
    xp::cli::Cli::command().debug_assert();
}

/// The modules `main.rs` declares: its `mod NAME;` lines, `pub` or not.
fn declared_modules(main: &str) -> BTreeSet<String> {
    main.lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("pub ").unwrap_or(l))
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn every_test_file_is_a_module_of_main() {
    let dir = repo().join("tests/it");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let declared = declared_modules(&main);
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "main")
        .collect();
    let missing: Vec<String> = files
        .difference(&declared)
        .map(|name| format!("tests/it/{name}.rs"))
        .collect();
    assert!(
        missing.is_empty(),
        "not declared in tests/it/main.rs, so their tests never run: {} (add `mod NAME;`)",
        missing.join(", ")
    );
}
