//! Run queries: `--where` expressions and `--sort` keys over config settings, run fields and
//! summary metrics, compiled to parameterized SQL (values and JSON paths are bound, never
//! spliced, so no input can change the statement).

use rusqlite::types::Value as SqlValue;

use super::state::Status;
use crate::manifest::{SETTINGS, check};
use crate::summary::SummaryMetric;
use crate::sweep::Expr;
use crate::sweep::expr::Op;

/// Fields of the run itself a query can use, with their SQL. `rung` is the furthest rung at
/// which an early-stopping decision was taken about the run (0 for the first; none before
/// one), `bracket` its Hyperband bracket.
const RUN_KEYS: [(&str, &str); 8] = [
    ("run", "r.id"),
    ("status", "r.status"),
    ("experiment", "e.name"),
    ("step", "r.step"),
    ("steps_total", "r.steps_total"),
    ("attempts", "r.attempts"),
    (
        "rung",
        "(SELECT max(d.rung) FROM decisions d WHERE d.run_id = r.id)",
    ),
    ("bracket", "json_extract(r.spec, '$.early_stop.bracket')"),
];

/// A query problem at a 1-based character column of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct QueryError {
    pub column: usize,
    pub message: String,
}

/// A SQL fragment with its bound values, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

/// A `--where` expression, parsed and compiled: the one entry point of the command line's
/// `--where` and the dashboard's filter.
pub fn compile_where(text: &str) -> Result<Sql, QueryError> {
    let expr = Expr::parse(text).map_err(|e| QueryError {
        column: e.column,
        message: e.message,
    })?;
    compile(&expr)
}

/// Every key a query accepts, for error messages and completion.
pub fn keys() -> Vec<&'static str> {
    let mut out: Vec<&str> = RUN_KEYS.iter().map(|(k, _)| *k).collect();
    out.extend(SummaryMetric::ALL.map(SummaryMetric::name));
    out.extend(SETTINGS.iter().copied());
    out
}

/// The SQL for one key; the statement joins `runs r`, `experiments e` and `summaries s`.
pub fn column(key: &str, at: usize) -> Result<Sql, QueryError> {
    if let Some((_, sql)) = RUN_KEYS.iter().find(|(k, _)| *k == key) {
        return Ok(Sql {
            text: sql.to_string(),
            params: vec![],
        });
    }
    if let Some(m) = SummaryMetric::parse(key) {
        return Ok(Sql {
            text: format!("s.{}", m.name()),
            params: vec![],
        });
    }
    if SETTINGS.contains(&key) {
        return Ok(Sql {
            text: "json_extract(r.spec, ?)".into(),
            params: vec![SqlValue::Text(format!("$.config.{key}"))],
        });
    }
    let all = keys();
    let hint = check::did_you_mean(key, all.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_else(|| {
            format!(
                "; keys are config settings (model.ffn.unit, train.lr, …), summary metrics ({}) \
                 and status, experiment, step, steps_total, attempts, run, rung, bracket",
                SummaryMetric::ALL.map(SummaryMetric::name).join(", ")
            )
        });
    Err(QueryError {
        column: at,
        message: format!("unknown key `{key}`{hint}"),
    })
}

/// Compiles a parsed `--where` expression to a SQL condition.
pub fn compile(expr: &Expr) -> Result<Sql, QueryError> {
    let mut out = Sql::default();
    emit(expr, &mut out)?;
    Ok(out)
}

fn emit(expr: &Expr, out: &mut Sql) -> Result<(), QueryError> {
    match expr {
        Expr::Num(n) => {
            out.text.push('?');
            out.params.push(if n.fract() == 0.0 && n.abs() < 9e15 {
                SqlValue::Integer(*n as i64)
            } else {
                SqlValue::Real(*n)
            });
        }
        Expr::Str(s) => {
            out.text.push('?');
            out.params.push(SqlValue::Text(s.clone()));
        }
        Expr::Bool(b) => {
            out.text.push('?');
            out.params.push(SqlValue::Integer(*b as i64));
        }
        Expr::Key(k, at) => {
            let c = column(k, *at)?;
            out.text.push_str(&c.text);
            out.params.extend(c.params);
        }
        Expr::Not(e) => {
            out.text.push_str("(NOT ");
            emit(e, out)?;
            out.text.push(')');
        }
        Expr::Neg(e) => {
            out.text.push_str("(-");
            emit(e, out)?;
            out.text.push(')');
        }
        Expr::Binary(op, a, b) => {
            check_operands(*op, a, b)?;
            out.text.push('(');
            // SQLite divides integers as integers; the expression language divides reals.
            if *op == Op::Div {
                out.text.push_str("1.0 * ");
            }
            emit(a, out)?;
            // The language's operators are SQL's own (`and`, `or`, `=`, `!=`, `<`, …).
            out.text.push_str(&format!(" {op} "));
            emit(b, out)?;
            out.text.push(')');
        }
    }
    Ok(())
}

/// Catches comparisons that can never be true because the literal is not a value the key can
/// have (`model.ffn.unit = 'gluu'`, `train.lr > 'big'`): SQL would silently match nothing.
fn check_operands(op: Op, a: &Expr, b: &Expr) -> Result<(), QueryError> {
    let (key, at, literal) = match (a, b) {
        (Expr::Key(k, at), lit) | (lit, Expr::Key(k, at)) => match lit {
            Expr::Num(n) => (k, *at, serde_json::json!(n)),
            Expr::Str(s) => (k, *at, serde_json::json!(s)),
            Expr::Bool(v) => (k, *at, serde_json::json!(v)),
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let numeric = SummaryMetric::parse(key).is_some()
        || ["run", "step", "steps_total", "attempts"].contains(&key.as_str());
    let fail = |message: String| {
        Err(QueryError {
            column: at,
            message,
        })
    };
    match op {
        Op::And | Op::Or => Ok(()),
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Lt | Op::Le | Op::Gt | Op::Ge
            if !literal.is_number() && (numeric || !literal.is_string()) =>
        {
            fail(format!(
                "`{key}` cannot be compared with {} using `{op}`",
                check::show(&literal)
            ))
        }
        _ if numeric && !literal.is_number() => fail(format!(
            "`{key}` is a number; {} is not",
            check::show(&literal)
        )),
        Op::Eq | Op::Ne if key == "status" => {
            let s = literal.as_str().unwrap_or_default();
            if Status::parse(s).is_some() {
                Ok(())
            } else {
                fail(format!(
                    "{} is not a run state; states are {}",
                    check::show(&literal),
                    Status::names().join(", ")
                ))
            }
        }
        Op::Eq | Op::Ne if SETTINGS.contains(&key.as_str()) => {
            let path: Vec<&str> = key.split('.').collect();
            let allowed = crate::manifest::schema::schema_at(&path)
                .and_then(crate::manifest::schema::enum_values)
                .filter(|v| !v.is_empty());
            match check::check_setting(key, &literal) {
                Ok(v) if v.is_empty() => Ok(()),
                // Usually an enumeration: list what it can be.
                Ok(_) if allowed.is_some() && literal.is_string() => fail(format!(
                    "`{key}` is never {}; it is one of {}",
                    check::show(&literal),
                    allowed.unwrap_or_default().join(", ")
                )),
                Ok(v) => fail(format!(
                    "{} is never a value of `{key}`: {}",
                    check::show(&literal),
                    v.iter()
                        .map(|x| x.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                )),
                Err(e) => fail(e),
            }
        }
        _ => Ok(()),
    }
}

/// A `--sort` key: `KEY` (ascending) or `KEY:desc`; runs without a value sort last.
pub fn order_by(spec: &str) -> Result<Sql, QueryError> {
    let (key, desc) = match spec.rsplit_once(':') {
        Some((k, "desc")) => (k, true),
        Some((k, "asc")) => (k, false),
        Some((_, other)) => {
            return Err(QueryError {
                column: spec.len() - other.len() + 1,
                message: format!("unknown direction `{other}`: use `:asc` or `:desc`"),
            });
        }
        None => (spec, false),
    };
    let c = column(key, 1)?;
    Ok(Sql {
        text: format!(
            "({0}) IS NULL, {0} {1}",
            c.text,
            if desc { "DESC" } else { "ASC" }
        ),
        params: c.params.iter().chain(&c.params).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(src: &str) -> Result<Sql, QueryError> {
        compile(&Expr::parse(src).unwrap())
    }

    #[test]
    fn compiles_to_bound_parameters() {
        let q =
            sql("model.ffn.unit = 'glu' and (best_val_loss < 1.6 or train.lr >= 1e-3)").unwrap();
        assert_eq!(
            q.text,
            "((json_extract(r.spec, ?) = ?) and ((s.best_val_loss < ?) or (json_extract(r.spec, ?) >= ?)))"
        );
        assert_eq!(
            q.params,
            vec![
                SqlValue::Text("$.config.model.ffn.unit".into()),
                SqlValue::Text("glu".into()),
                SqlValue::Real(1.6),
                SqlValue::Text("$.config.train.lr".into()),
                SqlValue::Real(1e-3),
            ]
        );
    }

    #[test]
    fn quotes_never_reach_the_statement() {
        let q = sql("experiment = \"x'); DROP TABLE runs; --\"").unwrap();
        assert_eq!(q.text, "(e.name = ?)");
        assert_eq!(
            q.params[0],
            SqlValue::Text("x'); DROP TABLE runs; --".into())
        );
    }

    #[test]
    fn rejects_unknown_keys_and_impossible_values_with_their_column() {
        let e = sql("train.lr > 0 and model.ffn.unti = 'glu'").unwrap_err();
        assert_eq!(e.column, 18);
        assert!(e.message.contains("did you mean `model.ffn.unit`"), "{e}");
        let e = sql("model.ffn.unit = 'gluu'").unwrap_err();
        assert_eq!(e.column, 1);
        assert!(
            e.message
                .starts_with("`model.ffn.unit` is never \"gluu\"; it is one of mlp, glu"),
            "{e}"
        );
        let e = sql("best_val_loss < 'low'").unwrap_err();
        assert!(e.message.contains("cannot be compared"), "{e}");
        let e = sql("status = 'done'").unwrap_err();
        assert!(e.message.contains("not a run state"), "{e}");
    }

    #[test]
    fn sort_keys_take_a_direction() {
        let o = order_by("best_val_loss:desc").unwrap();
        assert_eq!(o.text, "(s.best_val_loss) IS NULL, s.best_val_loss DESC");
        assert_eq!(order_by("train.lr").unwrap().params.len(), 2);
        assert_eq!(order_by("train.lr:up").unwrap_err().column, 10);
    }
}
