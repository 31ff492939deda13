//! Corpora: named datasets and file globs, what a plan needs to know of them before training.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::manifest::{DataConfig, Dataset, Tokenizer};

/// The public tiny Shakespeare corpus (char-rnn's `input.txt`).
pub const TINY_SHAKESPEARE: NamedDataset = NamedDataset {
    name: "tinyshakespeare",
    file: "tinyshakespeare.txt",
    url: "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    bytes: 1_115_394,
    char_vocab: 65,
};

/// A dataset xp knows by name: where to get it and how to recognise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedDataset {
    pub name: &'static str,
    pub file: &'static str,
    pub url: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
    pub char_vocab: usize,
}

pub fn named(dataset: Dataset) -> NamedDataset {
    match dataset {
        Dataset::Tinyshakespeare => TINY_SHAKESPEARE,
    }
}

/// Vocabulary size of the GPT-2 byte-pair encoding.
pub const GPT2_VOCAB: usize = 50257;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{pattern}` is not a valid glob: {message}")]
    BadGlob { pattern: String, message: String },
    #[error("`{pattern}` matches no files (looked in {dir})")]
    NoFiles { pattern: String, dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text")]
    NotText { path: PathBuf },
}

/// What planning learns of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub vocab_size: usize,
    /// blake3 over the files' names and bytes, for `path` corpora.
    pub fingerprint: Option<String>,
    pub files: Vec<PathBuf>,
}

/// The files a `path` pattern names, sorted, relative patterns taken from `base`.
pub fn files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, Error> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let full_text = full.to_string_lossy().into_owned();
    let paths = glob::glob(&full_text).map_err(|e| Error::BadGlob {
        pattern: pattern.into(),
        message: e.msg.to_string(),
    })?;
    let mut out: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        let dir = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        return Err(Error::NoFiles {
            pattern: pattern.into(),
            dir,
        });
    }
    Ok(out)
}

/// Reads `path` corpora (for their vocabulary and digest); named ones are known in advance.
pub fn facts(base: &Path, data: &DataConfig) -> Result<Facts, Error> {
    match (&data.path, data.source) {
        (Some(pattern), _) => {
            let files = files(base, pattern)?;
            let mut hasher = blake3::Hasher::new();
            let mut chars = BTreeSet::new();
            for path in &files {
                let bytes = std::fs::read(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::NotText { path: path.clone() })?;
                if data.tokenizer == Tokenizer::Char {
                    chars.extend(text.chars());
                }
                hasher.update(&(bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
            }
            let vocab_size = match data.tokenizer {
                Tokenizer::Char => chars.len(),
                Tokenizer::Gpt2 => GPT2_VOCAB,
            };
            Ok(Facts {
                vocab_size,
                fingerprint: Some(hasher.finalize().to_hex().to_string()),
                files,
            })
        }
        (None, source) => {
            let named = named(source.unwrap_or(Dataset::Tinyshakespeare));
            let vocab_size = match data.tokenizer {
                Tokenizer::Char => named.char_vocab,
                Tokenizer::Gpt2 => GPT2_VOCAB,
            };
            Ok(Facts {
                vocab_size,
                fingerprint: None,
                files: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_globs_and_counts_characters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "abc").unwrap();
        std::fs::write(dir.path().join("b.txt"), "cd\n").unwrap();
        let data = DataConfig {
            path: Some("*.txt".into()),
            ..DataConfig::default()
        };
        let f = facts(dir.path(), &data).unwrap();
        assert_eq!((f.vocab_size, f.files.len()), (5, 2));
        std::fs::write(dir.path().join("b.txt"), "cde").unwrap();
        assert_ne!(facts(dir.path(), &data).unwrap().fingerprint, f.fingerprint);
        let none = DataConfig {
            path: Some("*.md".into()),
            ..DataConfig::default()
        };
        assert!(matches!(
            facts(dir.path(), &none),
            Err(Error::NoFiles { .. })
        ));
    }
}
