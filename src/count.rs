//! Nouns with their counts: "1 run", "3 runs", "0 problems".

use std::fmt;

/// A noun that agrees with a count, shown with the count ([`Count::numbered`]) or without it
/// ([`Count::noun`]). Every noun xp counts takes an `s` in the plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<'a> {
    noun: &'a str,
    n: usize,
    with_number: bool,
}

impl<'a> Count<'a> {
    /// "1 run", "2 runs".
    pub fn numbered(noun: &'a str, n: usize) -> Count<'a> {
        Count {
            noun,
            n,
            with_number: true,
        }
    }

    /// "run", "runs": the noun alone, for a sentence that gives the count another way.
    pub fn noun(noun: &'a str, n: usize) -> Count<'a> {
        Count {
            noun,
            n,
            with_number: false,
        }
    }
}

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.with_number {
            write!(f, "{} ", self.n)?;
        }
        let plural = if self.n == 1 { "" } else { "s" };
        write!(f, "{}{plural}", self.noun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nouns_agree_with_their_counts() {
        assert_eq!(Count::numbered("run", 1).to_string(), "1 run");
        assert_eq!(Count::numbered("run", 0).to_string(), "0 runs");
        assert_eq!(Count::numbered("problem", 12).to_string(), "12 problems");
        assert_eq!(Count::noun("sweep point", 1).to_string(), "sweep point");
        assert_eq!(Count::noun("sweep point", 3).to_string(), "sweep points");
    }
}
