//! Corpora: named datasets (downloaded once into a cache), file globs, tokenizers and splits.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    #[error(
        "cannot download {name} from {url}: {message}\n\
         put the file at {path} (sha256 {sha256}) and run again"
    )]
    Download {
        name: String,
        url: String,
        message: String,
        path: PathBuf,
        sha256: String,
    },
    #[error(
        "{path} does not match the checksum of {name} (sha256 {found}, expected {expected}); delete it to download again"
    )]
    Checksum {
        name: String,
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot write to the cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the corpus has {tokens} tokens, too few for a split with val_fraction {val_fraction} and block size {block}"
    )]
    TooSmall {
        tokens: usize,
        val_fraction: f64,
        block: usize,
    },
    #[error("the GPT-2 tokenizer could not be loaded: {0}")]
    Tokenizer(String),
}

/// xp's cache folder: `XP_CACHE`, else the platform cache folder's `xp`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("XP_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("xp"),
    }
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The cached copy of a named dataset, downloading and verifying it the first time.
pub fn ensure(dataset: NamedDataset) -> Result<PathBuf, Error> {
    ensure_in(&cache_dir(), dataset)
}

fn ensure_in(cache: &Path, dataset: NamedDataset) -> Result<PathBuf, Error> {
    let dir = cache.join("datasets");
    let path = dir.join(dataset.file);
    if path.exists() {
        let found = sha256_file(&path)?;
        if found != dataset.sha256 {
            return Err(Error::Checksum {
                name: dataset.name.into(),
                path,
                found,
                expected: dataset.sha256.into(),
            });
        }
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Cache {
        path: dir.clone(),
        source,
    })?;
    let fail = |message: String| Error::Download {
        name: dataset.name.into(),
        url: dataset.url.into(),
        message,
        path: path.clone(),
        sha256: dataset.sha256.into(),
    };
    tracing::info!(url = dataset.url, "downloading {}", dataset.name);
    let mut body = Vec::with_capacity(dataset.bytes as usize);
    ureq::get(dataset.url)
        .call()
        .map_err(|e| fail(e.to_string()))?
        .into_body()
        .into_reader()
        .take(dataset.bytes * 2)
        .read_to_end(&mut body)
        .map_err(|e| fail(e.to_string()))?;
    let found = format!("{:x}", Sha256::digest(&body));
    if found != dataset.sha256 {
        return Err(fail(format!(
            "the download's sha256 is {found}, expected {}",
            dataset.sha256
        )));
    }
    // Written under a temporary name and renamed, so a half-written file is never taken as the corpus.
    let partial = dir.join(format!("{}.partial", dataset.file));
    std::fs::write(&partial, &body).map_err(|source| Error::Cache {
        path: partial.clone(),
        source,
    })?;
    std::fs::rename(&partial, &path).map_err(|source| Error::Cache {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The corpus text of a resolved data config.
pub fn load_text(base: &Path, data: &DataConfig) -> Result<String, Error> {
    let paths = match &data.path {
        Some(pattern) => files(base, pattern)?,
        None => vec![ensure(named(
            data.source.unwrap_or(Dataset::Tinyshakespeare),
        ))?],
    };
    let mut text = String::new();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        text.push_str(
            std::str::from_utf8(&bytes).map_err(|_| Error::NotText { path: path.clone() })?,
        );
    }
    Ok(text)
}

/// Turns text into token ids and back.
#[derive(Clone)]
pub enum TextTokenizer {
    /// One token per character, ids in the order of the sorted vocabulary.
    Char {
        chars: Vec<char>,
    },
    Gpt2(&'static tiktoken_rs::CoreBPE),
}

impl TextTokenizer {
    /// A char tokenizer over the characters of `text`, or the GPT-2 encoding.
    pub fn fit(kind: Tokenizer, text: &str) -> Result<Self, Error> {
        Ok(match kind {
            Tokenizer::Char => {
                let set: BTreeSet<char> = text.chars().collect();
                TextTokenizer::Char {
                    chars: set.into_iter().collect(),
                }
            }
            Tokenizer::Gpt2 => TextTokenizer::Gpt2(tiktoken_rs::r50k_base_singleton()),
        })
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            TextTokenizer::Char { chars } => chars.len(),
            TextTokenizer::Gpt2(_) => GPT2_VOCAB,
        }
    }

    /// Token ids of `text`; characters outside a char vocabulary are dropped.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            TextTokenizer::Char { chars } => text
                .chars()
                .filter_map(|c| chars.binary_search(&c).ok().map(|i| i as u32))
                .collect(),
            TextTokenizer::Gpt2(bpe) => bpe.encode_ordinary(text),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            TextTokenizer::Char { chars } => {
                ids.iter().filter_map(|&i| chars.get(i as usize)).collect()
            }
            TextTokenizer::Gpt2(bpe) => bpe.decode(ids).unwrap_or_default(),
        }
    }

    /// What to save with a run so that its samples decode the same way later.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            TextTokenizer::Char { chars } => {
                serde_json::json!({ "kind": "char", "chars": chars.iter().collect::<String>() })
            }
            TextTokenizer::Gpt2(_) => serde_json::json!({ "kind": "gpt2" }),
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value.get("kind")?.as_str()? {
            "char" => Some(TextTokenizer::Char {
                chars: value.get("chars")?.as_str()?.chars().collect(),
            }),
            "gpt2" => Some(TextTokenizer::Gpt2(tiktoken_rs::r50k_base_singleton())),
            _ => None,
        }
    }
}

/// A tokenized corpus split into training and validation tokens.
pub struct Corpus {
    pub tokenizer: TextTokenizer,
    pub train: Vec<u32>,
    pub val: Vec<u32>,
}

/// Loads, tokenizes and splits the corpus: the last `val_fraction` of the tokens is validation.
pub fn corpus(base: &Path, data: &DataConfig, block_size: usize) -> Result<Corpus, Error> {
    let text = load_text(base, data)?;
    let tokenizer = TextTokenizer::fit(data.tokenizer, &text)?;
    let ids = tokenizer.encode(&text);
    let split = ((ids.len() as f64) * (1.0 - data.val_fraction)) as usize;
    if split <= block_size + 1 || ids.len() - split <= block_size + 1 {
        return Err(Error::TooSmall {
            tokens: ids.len(),
            val_fraction: data.val_fraction,
            block: block_size,
        });
    }
    Ok(Corpus {
        tokenizer,
        train: ids[..split].to_vec(),
        val: ids[split..].to_vec(),
    })
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
    fn char_tokenizer_round_trips_and_splits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.txt"), "hello world, ".repeat(40)).unwrap();
        let data = DataConfig {
            path: Some("c.txt".into()),
            ..DataConfig::default()
        };
        let c = corpus(dir.path(), &data, 8).unwrap();
        assert_eq!(c.tokenizer.vocab_size(), 9);
        assert_eq!(c.train.len() + c.val.len(), 13 * 40);
        assert_eq!(c.tokenizer.decode(&c.tokenizer.encode("hello")), "hello");
        let restored = TextTokenizer::from_json(&c.tokenizer.to_json()).unwrap();
        assert_eq!(restored.encode("world"), c.tokenizer.encode("world"));
        assert!(matches!(
            corpus(dir.path(), &data, 500),
            Err(Error::TooSmall { .. })
        ));
    }

    #[test]
    fn gpt2_tokenizer_works_offline() {
        let t = TextTokenizer::fit(Tokenizer::Gpt2, "").unwrap();
        let ids = t.encode("ROMEO: hello");
        assert_eq!(t.decode(&ids), "ROMEO: hello");
        assert_eq!(t.vocab_size(), 50257);
    }

    #[test]
    fn a_bad_cached_copy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("datasets")).unwrap();
        std::fs::write(dir.path().join("datasets/tinyshakespeare.txt"), "not it").unwrap();
        let found = ensure_in(dir.path(), TINY_SHAKESPEARE);
        assert!(matches!(found, Err(Error::Checksum { .. })), "{found:?}");
    }

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
