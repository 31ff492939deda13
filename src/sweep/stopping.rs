//! A sweep's `[sweep.early_stop]` section, with its defaults taken from a run's config, and
//! the checks that need both: rungs that fall on the steps where the objective is recorded,
//! a first rung before the last step, brackets that each have a rung.

use crate::early_stop::{EarlyStop, OBJECTIVES, StopMethod};
use crate::manifest::check::did_you_mean;
use crate::manifest::{Config, Diagnostic, EarlyStopSection};

/// The manifest's pointer to a key of the section.
pub(super) fn pointer(key: &str) -> String {
    format!("/sweep/early_stop/{key}")
}

/// The settings for a run with this config: `min_steps` defaults to its first evaluation,
/// Hyperband's brackets to one per rung plus one that trains to the end.
pub(super) fn settings(section: &EarlyStopSection, config: &Config) -> EarlyStop {
    let mut settings = EarlyStop {
        method: section.method,
        metric: section.metric.clone(),
        mode: section.mode,
        min_steps: section.min_steps.unwrap_or(config.train.eval_every),
        eta: section.eta,
        brackets: 1,
        smooth: section.smooth,
        min_peers: section.min_peers,
        seed: section.seed,
        on_arrival: false,
    };
    if section.method == StopMethod::Hyperband {
        let rungs = settings.rungs(0, config.train.steps).len() as u32;
        settings.brackets = section.brackets.unwrap_or((rungs + 1).min(64));
    }
    settings
}

/// The problems of early stopping for a run with this config, each with the pointer of the
/// key it concerns.
pub(super) fn check(
    section: &EarlyStopSection,
    settings: &EarlyStop,
    config: &Config,
) -> Vec<(Diagnostic, String)> {
    let mut out = Vec::new();
    let t = &config.train;
    if !OBJECTIVES.contains(&settings.metric.as_str()) {
        let help = match did_you_mean(&settings.metric, OBJECTIVES) {
            Some(best) => format!("did you mean \"{best}\"?"),
            None => format!("objectives: {}", OBJECTIVES.join(", ")),
        };
        out.push((
            Diagnostic::at(
                None,
                "sweep.early_stop.metric",
                format!(
                    "unknown objective metric `{}` in `sweep.early_stop.metric`",
                    settings.metric
                ),
            )
            .label("not a metric every run records")
            .help(help),
            pointer("metric"),
        ));
        return out;
    }
    let min_steps_key = if section.min_steps.is_some() {
        pointer("min_steps")
    } else {
        "/sweep/early_stop".to_string()
    };
    if settings.min_steps >= t.steps {
        out.push((
            Diagnostic::at(
                None,
                "sweep.early_stop.min_steps",
                format!(
                    "`sweep.early_stop.min_steps` = {} is not below `train.steps` = {}",
                    settings.min_steps, t.steps
                ),
            )
            .label("the first rung must come before the last step")
            .help(format!(
                "set min_steps below {} (train.steps is the most a run trains)",
                t.steps
            )),
            min_steps_key,
        ));
        return out;
    }
    match (section.method, section.brackets) {
        (StopMethod::Hyperband, _) => {
            let most = settings.rungs(0, t.steps).len() as u32 + 1;
            if settings.brackets > most {
                out.push((
                    Diagnostic::at(
                        None,
                        "sweep.early_stop.brackets",
                        format!(
                            "`sweep.early_stop.brackets` = {} leaves brackets without a run to \
                             stop: with rungs from step {} (eta {}) below {} steps there are at \
                             most {most}",
                            settings.brackets, settings.min_steps, settings.eta, t.steps
                        ),
                    )
                    .label(format!("at most {most}")),
                    pointer("brackets"),
                ));
            }
        }
        (_, Some(b)) if b != 1 => out.push((
            Diagnostic::at(
                None,
                "sweep.early_stop.brackets",
                "`sweep.early_stop.brackets` applies to method = \"hyperband\" only",
            )
            .label("not used by this method")
            .help("remove it, or set method = \"hyperband\""),
            pointer("brackets"),
        )),
        _ => {}
    }
    let (every, every_key) = if settings.metric == "train_loss" {
        (t.log_every, "train.log_every")
    } else {
        (t.eval_every, "train.eval_every")
    };
    let off: Vec<u64> = (0..settings.brackets)
        .flat_map(|b| settings.rungs(b, t.steps))
        .filter(|r| !r.is_multiple_of(every))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !off.is_empty() {
        let shown: Vec<String> = off.iter().take(6).map(u64::to_string).collect();
        let divisor = gcd(settings.min_steps, every);
        out.push((
            Diagnostic::at(
                None,
                "sweep.early_stop.min_steps",
                format!(
                    "rungs at steps {} fall between the steps where `{}` is recorded \
                     (`{every_key}` = {every})",
                    shown.join(", "),
                    settings.metric
                ),
            )
            .label("every rung must be a step where the objective is recorded")
            .help(format!(
                "set {every_key} = {divisor} (it divides min_steps = {}), or min_steps to a \
                 multiple of {every}",
                settings.min_steps
            )),
            min_steps_key,
        ));
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}
