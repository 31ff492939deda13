//! Run summaries: the figures a finished run is reduced to. One definition, shared by the
//! trainer (which computes them), the store (one column each), `--where`/`--sort` keys, and
//! the compare and export reports.

use serde::{Deserialize, Serialize};

/// One summary figure. Its name is the store's column name and the query key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SummaryMetric {
    BestValLoss,
    FinalValLoss,
    FinalTrainLoss,
    MedianTokensPerS,
    WallS,
    Params,
}

/// Which way a figure is better, for marking the better run in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    Neither,
}

impl SummaryMetric {
    /// Every figure, in the order reports show them.
    pub const ALL: [SummaryMetric; 6] = [
        SummaryMetric::BestValLoss,
        SummaryMetric::FinalValLoss,
        SummaryMetric::FinalTrainLoss,
        SummaryMetric::MedianTokensPerS,
        SummaryMetric::WallS,
        SummaryMetric::Params,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            SummaryMetric::BestValLoss => "best_val_loss",
            SummaryMetric::FinalValLoss => "final_val_loss",
            SummaryMetric::FinalTrainLoss => "final_train_loss",
            SummaryMetric::MedianTokensPerS => "median_tokens_per_s",
            SummaryMetric::WallS => "wall_s",
            SummaryMetric::Params => "params",
        }
    }

    pub fn parse(name: &str) -> Option<SummaryMetric> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub const fn better(self) -> Better {
        match self {
            SummaryMetric::MedianTokensPerS => Better::Higher,
            SummaryMetric::Params => Better::Neither,
            _ => Better::Lower,
        }
    }

    /// Whether the figure is a count (shown and stored as an integer).
    pub const fn is_count(self) -> bool {
        matches!(self, SummaryMetric::Params)
    }
}

impl std::fmt::Display for SummaryMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A run's summary. Every figure is optional: a run stopped before its first evaluation has
/// no validation loss, and a store written by an older xp may lack any of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub best_val_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    pub final_train_loss: Option<f64>,
    pub median_tokens_per_s: Option<f64>,
    pub wall_s: Option<f64>,
    pub params: Option<u64>,
}

impl Summary {
    pub fn get(&self, metric: SummaryMetric) -> Option<f64> {
        match metric {
            SummaryMetric::BestValLoss => self.best_val_loss,
            SummaryMetric::FinalValLoss => self.final_val_loss,
            SummaryMetric::FinalTrainLoss => self.final_train_loss,
            SummaryMetric::MedianTokensPerS => self.median_tokens_per_s,
            SummaryMetric::WallS => self.wall_s,
            SummaryMetric::Params => self.params.map(|p| p as f64),
        }
    }

    pub fn set(&mut self, metric: SummaryMetric, value: Option<f64>) {
        match metric {
            SummaryMetric::BestValLoss => self.best_val_loss = value,
            SummaryMetric::FinalValLoss => self.final_val_loss = value,
            SummaryMetric::FinalTrainLoss => self.final_train_loss = value,
            SummaryMetric::MedianTokensPerS => self.median_tokens_per_s = value,
            SummaryMetric::WallS => self.wall_s = value,
            SummaryMetric::Params => self.params = value.map(|p| p as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_reads_back_what_was_set_and_parses_its_name() {
        let mut s = Summary::default();
        for (i, m) in SummaryMetric::ALL.into_iter().enumerate() {
            s.set(m, Some(i as f64 + 1.0));
            assert_eq!(SummaryMetric::parse(m.name()), Some(m));
        }
        for (i, m) in SummaryMetric::ALL.into_iter().enumerate() {
            assert_eq!(s.get(m), Some(i as f64 + 1.0), "{m}");
        }
        assert_eq!(SummaryMetric::parse("loss"), None);
    }
}
