//! The live stream (`/api/events`, server-sent events): the runs whose state or step moved,
//! and the metric rows recorded since the last one the page has, smoothed on from where the
//! page's curve stopped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::app::App;
use super::data::{self, Answer, ApiError, CurvesQuery, RunRow};
use super::params::chart_params;
use super::series::{Curve, Line, Smoothing, XMap};
use crate::store::{Listed, Store};

/// How often the store is looked at. A look that finds no new commit costs one pragma.
const POLL: Duration = Duration::from_millis(300);

/// The curves a page watches, each continued from the last step it has.
struct Watch {
    query: CurvesQuery,
    curves: HashMap<i64, Curve>,
}

struct Stream {
    app: Arc<App>,
    store: Option<Store>,
    version: Option<i64>,
    snapshot: data::Snapshot,
    watch: Option<Watch>,
    /// Events ready to send.
    pending: std::collections::VecDeque<Event>,
}

#[derive(Serialize)]
struct RunsEvent {
    rows: Vec<RunRow>,
    /// A run the page has not seen was queued: it should list the table again.
    appeared: bool,
}

#[derive(Serialize)]
struct PointsEvent {
    run: i64,
    metric: String,
    raw: Line,
    smooth: Option<Line>,
    last_step: Option<i64>,
}

fn event(name: &str, value: &impl Serialize) -> Option<Event> {
    serde_json::to_string(value)
        .ok()
        .map(|data| Event::default().event(name).data(data))
}

/// `after=1:500,2:480`: the last step of each watched run the page has.
fn parse_after(text: &str) -> Answer<HashMap<i64, i64>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (run, step) = pair.split_once(':').unwrap_or((pair, ""));
            match (
                crate::store::runs::parse_run_ref(run),
                step.parse::<i64>().ok(),
            ) {
                (Some(r), Some(s)) => Ok((r, s)),
                _ => Err(ApiError::bad(
                    "after",
                    format!("`{pair}` is not RUN:STEP (the last step the page has of a run)"),
                )),
            }
        })
        .collect()
}

pub(super) async fn events(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let watch = if q.get("runs").is_some_and(|r| !r.is_empty()) {
        match (
            chart_params(&q),
            parse_after(q.get("after").map(String::as_str).unwrap_or_default()),
        ) {
            (Ok(query), Ok(after)) => Some((query, after)),
            (Err(e), _) | (_, Err(e)) => return e.into_response(),
        }
    } else {
        None
    };
    let start = Stream {
        app,
        store: None,
        version: None,
        snapshot: data::Snapshot::default(),
        watch: None,
        pending: Default::default(),
    };
    let stream = futures_util::stream::unfold((start, watch), |(mut s, mut setup)| async move {
        loop {
            if let Some(e) = s.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(e), (s, setup)));
            }
            // The first look sets up at once; later ones wait for the next poll.
            if s.store.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let taken = setup.take();
            s = match tokio::task::spawn_blocking(move || {
                s.look(taken);
                s
            })
            .await
            {
                Ok(s) => s,
                // The looking thread panicked: end the stream; the page reconnects.
                Err(_) => return None,
            };
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

impl Stream {
    /// Reads what changed, queueing events; a failure is sent as a `problem` event (`error`
    /// is the browser's own name for a lost connection).
    fn look(&mut self, setup: Option<(CurvesQuery, HashMap<i64, i64>)>) {
        if let Err(e) = self.try_look(setup)
            && let Some(ev) = event("problem", &e)
        {
            self.pending.push_back(ev);
        }
    }

    fn try_look(&mut self, setup: Option<(CurvesQuery, HashMap<i64, i64>)>) -> Answer<()> {
        if self.store.is_none() {
            self.store = Some(Store::open_read_only(&self.app.db)?);
        }
        let store = self.store.as_ref().expect("opened above");
        if let Some((query, after)) = setup {
            self.watch = Some(watch(store, query, &after)?);
            // Rows recorded between the page's request and now are sent at once.
            self.version = None;
        }
        let version = store.data_version()?;
        if self.version == Some(version) {
            return Ok(());
        }
        self.version = Some(version);
        let (changed, appeared) = self.snapshot.changes(store)?;
        if !changed.is_empty() || appeared {
            let mut rows = Vec::with_capacity(changed.len());
            for id in changed {
                let run = store.run_by_id(id)?;
                let summary = store.summary(id)?;
                rows.push(data::row(store, Listed { run, summary })?);
            }
            self.pending
                .extend(event("runs", &RunsEvent { rows, appeared }));
        }
        if let Some(w) = &mut self.watch {
            let smoothing = w.query.smoothing;
            for (&run, curve) in w.curves.iter_mut() {
                let before = curve.steps.len();
                let rows = store.metric_rows(run, &w.query.metric, curve.last_step())?;
                if curve.extend(rows) == 0 {
                    continue;
                }
                let tail = |l: &Line| Line {
                    x: l.x[before..].to_vec(),
                    y: l.y[before..].to_vec(),
                };
                self.pending.extend(event(
                    "points",
                    &PointsEvent {
                        run,
                        metric: w.query.metric.clone(),
                        raw: tail(&curve.raw),
                        smooth: (smoothing != Smoothing::None).then(|| tail(&curve.smooth)),
                        last_step: curve.last_step(),
                    },
                ));
            }
        }
        Ok(())
    }
}

/// Sets up the watched curves: each read up to the step the page has, so that smoothing and
/// the time axis go on from the same state as the page's curve.
fn watch(store: &Store, query: CurvesQuery, after: &HashMap<i64, i64>) -> Answer<Watch> {
    if query.runs.len() > data::MAX_CURVE_RUNS {
        return Err(ApiError::bad(
            "runs",
            format!("a live chart follows at most {} runs", data::MAX_CURVE_RUNS),
        ));
    }
    let mut curves = HashMap::new();
    for &id in &query.runs {
        let run = store.run_by_id(id)?;
        let rows = store.metric_rows(id, &query.metric, None)?;
        // What the page does not have yet is left out here and sent as new.
        let keep = after
            .get(&id)
            .map_or(rows.len(), |&last| rows.partition_point(|r| r.0 <= last));
        let mut c = Curve::new(
            XMap::new(query.x, data::tokens_per_step(&run)),
            query.smoothing,
        );
        c.extend(rows.into_iter().take(keep));
        curves.insert(id, c);
    }
    Ok(Watch { query, curves })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_lists_parse() {
        let a = parse_after("1:500,run-2:480").unwrap();
        assert_eq!(a[&1], 500);
        assert_eq!(a[&2], 480);
        assert_eq!(
            parse_after("1").unwrap_err().message,
            "`1` is not RUN:STEP (the last step the page has of a run)"
        );
    }
}
