//! Problems found in a manifest, each pointing at the file, key and span it concerns.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::count::Count;
use miette::{LabeledSpan, SourceCode};

/// Where the offending value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The manifest file, at this byte span (None where no single span applies).
    File(Option<Range<usize>>),
    /// An `XP_…` environment variable.
    Env(String),
    /// A `--set key=value` flag.
    Flag(String),
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted key the problem concerns (empty for file-level problems such as syntax errors).
    pub key: String,
    pub message: String,
    pub origin: Origin,
    /// Text under the span: what would be valid, or what is wrong here.
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            origin: Origin::File(span),
            label: String::new(),
            help: None,
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

/// All problems of one manifest, with its text for rendering.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: String,
    pub text: Arc<String>,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: impl Into<String>, text: Arc<String>) -> Self {
        Self {
            file: file.into(),
            text,
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        if !self.items.contains(&diagnostic) {
            self.items.push(diagnostic);
        }
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        for d in diagnostics {
            self.push(d);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by position in the file, then by key, so output is stable.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let pos = |d: &Diagnostic| match &d.origin {
                Origin::File(Some(span)) => (0, span.start),
                Origin::File(None) => (1, 0),
                Origin::Env(_) => (2, 0),
                Origin::Flag(_) => (3, 0),
            };
            pos(a)
                .cmp(&pos(b))
                .then_with(|| a.key.cmp(&b.key))
                .then_with(|| a.message.cmp(&b.message))
        });
    }

    /// Each problem as a miette diagnostic carrying the manifest text.
    pub fn reports(&self) -> impl Iterator<Item = Report<'_>> {
        self.items.iter().map(move |item| Report {
            item,
            file: &self.file,
            text: &self.text,
        })
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len();
        write!(f, "{}: {}", self.file, Count::numbered("problem", n))
    }
}

impl std::error::Error for Diagnostics {}

/// One problem, ready for a miette report handler.
#[derive(Debug)]
pub struct Report<'a> {
    item: &'a Diagnostic,
    file: &'a str,
    text: &'a Arc<String>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.item.origin {
            Origin::File(_) => f.write_str(&self.item.message),
            Origin::Env(var) => {
                write!(f, "{} (from environment variable {var})", self.item.message)
            }
            Origin::Flag(flag) => write!(f, "{} (from --set {flag})", self.item.message),
        }
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self.item.origin {
            Origin::File(Some(_)) => Some(self as &dyn SourceCode),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let Origin::File(Some(span)) = &self.item.origin else {
            return None;
        };
        let label = (!self.item.label.is_empty()).then(|| self.item.label.clone());
        Some(Box::new(std::iter::once(
            LabeledSpan::new_primary_with_span(label, span.clone()),
        )))
    }

    fn help(&self) -> Option<Box<dyn fmt::Display + '_>> {
        match (&self.item.origin, &self.item.help) {
            (Origin::File(Some(_)), Some(help)) => Some(Box::new(help)),
            (Origin::File(Some(_)), None) => None,
            // Without a snippet the label would be lost, so it joins the help.
            (_, help) => {
                let parts: Vec<&str> = [Some(self.item.label.as_str()), help.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect();
                (!parts.is_empty()).then(|| Box::new(parts.join("; ")) as Box<dyn fmt::Display>)
            }
        }
    }
}

impl SourceCode for Report<'_> {
    fn read_span<'b>(
        &'b self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'b> + 'b>, miette::MietteError> {
        let contents =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.file.to_string(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}
