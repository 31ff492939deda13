//! What commands take as input: manifests (with their overrides) planned into runs, and
//! selections of stored runs (`--experiment`, `--status`, `--where`, `--sort`).

use crate::manifest::{self, Loaded, Override};
use crate::store::{self, Status, Store};
use crate::sweep::{self, Plan};

use super::{Error, Result};

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
    let machine = machine();
    let plan = sweep::plan(&loaded, &overrides, &machine).map_err(manifest::Error::Invalid)?;
    Ok((loaded, overrides, plan))
}

/// This machine as profiles see it: CPU, RAM and its GPUs with their drivers' figures.
pub fn machine() -> manifest::profiles::Machine {
    manifest::profiles::Machine::detect().with_gpus(crate::train::device::gpus())
}

/// Parses a `--where` expression and compiles it to SQL, or says where it is wrong.
pub fn compile_where(text: &str) -> Result<store::query::Sql> {
    store::query::compile_where(text).map_err(|e| Error::Query {
        flag: "--where",
        text: text.to_string(),
        column: e.column,
        message: e.message,
    })
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

impl clap::ValueEnum for Status {
    fn value_variants<'a>() -> &'a [Self] {
        &Status::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Which runs a listing command reads: `--experiment`, `--status`, `--where`.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Only runs of this experiment.
    #[arg(long)]
    experiment: Option<String>,
    /// Only runs in this state.
    #[arg(long, value_enum)]
    status: Option<Status>,
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
            status: self.status,
            newest_first: false,
            limit,
        };
        Ok(store.query(&filter, condition.as_ref(), order.as_ref())?)
    }
}
