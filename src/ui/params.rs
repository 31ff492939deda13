//! The dashboard's request parameters, parsed into the queries of [`super::data`]; a bad one
//! is a 400 that names it.

use std::collections::HashMap;

use axum::extract::Query;

use super::data::{self, Answer, ApiError};
use super::series::{Smoothing, XAxis};

/// A request's query parameters.
pub(super) type Params = Query<HashMap<String, String>>;

/// A parameter's value, unless it is missing or empty.
pub(super) fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|s| !s.is_empty())
}

/// A run named in a path (`run-N` or N).
pub(super) fn run_id(text: &str) -> Answer<i64> {
    crate::store::runs::parse_run_ref(text)
        .ok_or_else(|| ApiError::not_found(format!("no run `{text}` (runs are named run-N)")))
}

/// Parses the chart parameters shared by the curve request and the live stream.
pub(super) fn chart_params(q: &HashMap<String, String>) -> Answer<data::CurvesQuery> {
    let runs = data::parse_runs(param(q, "runs").unwrap_or_default())?;
    let metric = param(q, "metric").unwrap_or("val_loss").to_string();
    let x = match param(q, "x") {
        None => XAxis::Step,
        Some(s) => XAxis::parse(s).ok_or_else(|| {
            ApiError::bad(
                "x",
                format!("unknown x axis `{s}`: use step, tokens or time"),
            )
        })?,
    };
    let number = |name: &'static str| -> Answer<Option<f64>> {
        param(q, name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| ApiError::bad(name, format!("`{v}` is not a number")))
            })
            .transpose()
    };
    let smoothing = Smoothing::parse(param(q, "smooth").unwrap_or("none"), number("param")?)
        .map_err(|m| ApiError::bad("smooth", m))?;
    let points = number("points")?.map_or(data::MAX_POINTS, |p| p.max(0.0) as usize);
    Ok(data::CurvesQuery {
        runs,
        metric,
        x,
        smoothing,
        group: param(q, "group").map(String::from),
        points,
    })
}
