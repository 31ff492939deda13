//! The HTTP side of the dashboard: routes, the embedded files, the guard (token, and the Host
//! check that keeps other web sites' pages from reading a loopback dashboard), and a pool of
//! read-only store connections used off the async threads.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::app::App;
use super::data::{self, Answer, ApiError};
use super::params::{Params, chart_params, param, run_id};
use super::{Error, Options, assets, live};
use crate::store::Store;

/// A server bound to its address, not yet serving: the caller learns the port (`--port 0`
/// picks one) before it blocks in [`Bound::serve`].
pub struct Bound {
    addr: SocketAddr,
    listener: std::net::TcpListener,
    app: Arc<App>,
}

/// Checks the store and binds the address.
pub fn bind(options: Options) -> Result<Bound, Error> {
    // Fails here, before the address is taken, if the store cannot be read.
    let store = Store::open_read_only(&options.db)?;
    let addr = SocketAddr::new(options.host, options.port);
    let listener = std::net::TcpListener::bind(addr).map_err(|source| Error::Bind {
        addr,
        hint: match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another program has that port: pick another with --port, or --port 0 for any free one)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (no network interface of this machine has that address)"
            }
            _ => "",
        },
        source,
    })?;
    listener.set_nonblocking(true).map_err(Error::Serve)?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    Ok(Bound {
        addr,
        listener,
        app: Arc::new(App {
            db: options.db,
            token: options.token,
            loopback: options.host.is_loopback(),
            pool: Mutex::new(vec![store]),
            sampling: Mutex::new(()),
        }),
    })
}

impl Bound {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends.
    pub fn serve(self) -> Result<(), Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(Error::Serve)?;
        runtime
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(self.listener)?;
                axum::serve(listener, router(self.app)).await
            })
            .map_err(Error::Serve)
    }
}

pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*name}", get(asset))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/sample", get(sample))
        .route("/api/curves", get(curves))
        .route("/api/metrics", get(metrics))
        .route("/api/diff", get(diff))
        .route("/api/searches", get(searches))
        .route("/api/trials", get(trials))
        .route("/api/events", get(live::events))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

/// The cookie a first request with the right `?token=` sets, so the page's own requests
/// (scripts, the event stream) carry it.
const COOKIE: &str = "xp_ui_token";

/// Compares without stopping at the first difference, so that timing says nothing about the token.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn token_in(req: &Request) -> (Option<String>, bool) {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(String::from)
    });
    if from_query.is_some() {
        return (from_query, true);
    }
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from);
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(String::from)
        });
    (bearer.or(cookie), false)
}

/// Whether a Host header names this machine's loopback: a page of another site that resolves
/// its own name to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if app.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !loopback_host(host) {
            return (
                StatusCode::FORBIDDEN,
                "this dashboard answers only requests addressed to localhost or 127.0.0.1\n",
            )
                .into_response();
        }
    }
    let mut set_cookie = None;
    if let Some(expected) = &app.token {
        let (given, in_query) = token_in(&req);
        if !given
            .as_deref()
            .is_some_and(|g| constant_time_eq(g, expected))
        {
            return (
                StatusCode::UNAUTHORIZED,
                "this dashboard needs its token: open the address `xp ui` printed, which carries it\n",
            )
                .into_response();
        }
        if in_query {
            set_cookie = Some(format!(
                "{COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/"
            ));
        }
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, c);
    }
    response
}

fn file(name: &str, request: &HeaderMap) -> Response {
    let Some(asset) = assets::get(name) else {
        return not_found_response();
    };
    let etag = assets::etag(asset);
    let cached = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if cached {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.mime)], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    response
}

async fn index(headers: HeaderMap) -> Response {
    file("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    file(&name, &headers)
}

fn not_found_response() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn not_found() -> Response {
    not_found_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, json(&serde_json::json!({ "error": self }))).into_response()
    }
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn reply<T: Serialize>(answer: Answer<T>) -> Response {
    match answer {
        Ok(v) => json(&v),
        Err(e) => e.into_response(),
    }
}

async fn runs(State(app): State<Arc<App>>, Query(q): Params) -> Response {
    let query = data::RunsQuery {
        condition: q.get("where").cloned(),
        sort: q.get("sort").cloned(),
        experiment: q.get("experiment").cloned(),
        status: q.get("status").cloned(),
    };
    reply(app.read(move |s| data::runs(s, &query)).await)
}

async fn run(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match run_id(&id) {
        Ok(id) => reply(app.read(move |s| data::run_page(s, id)).await),
        Err(e) => e.into_response(),
    }
}

async fn curves(State(app): State<Arc<App>>, Query(q): Params) -> Response {
    match chart_params(&q) {
        Ok(query) => reply(app.read(move |s| data::curves(s, &query)).await),
        Err(e) => e.into_response(),
    }
}

async fn searches(State(app): State<Arc<App>>) -> Response {
    reply(app.read(data::searches).await)
}

async fn trials(State(app): State<Arc<App>>) -> Response {
    reply(app.read(data::trials).await)
}

async fn metrics(State(app): State<Arc<App>>, Query(q): Params) -> Response {
    match data::parse_runs(param(&q, "runs").unwrap_or_default()) {
        Ok(ids) => reply(app.read(move |s| data::metrics(s, &ids)).await),
        Err(e) => e.into_response(),
    }
}

async fn diff(State(app): State<Arc<App>>, Query(q): Params) -> Response {
    let ids = (|| -> Answer<(i64, i64)> {
        let one = |name: &'static str| -> Answer<i64> {
            let text = param(&q, name)
                .ok_or_else(|| ApiError::bad(name, format!("`{name}` names a run")))?;
            crate::store::runs::parse_run_ref(text)
                .ok_or_else(|| ApiError::bad(name, format!("`{text}` is not a run")))
        };
        Ok((one("a")?, one("b")?))
    })();
    match ids {
        Ok((a, b)) => reply(app.read(move |s| data::diff(s, a, b)).await),
        Err(e) => e.into_response(),
    }
}

#[derive(Serialize)]
struct Sampled {
    run: String,
    checkpoint: i64,
    prompt: String,
    text: String,
}

/// Text from a run's checkpoint (`best`, `last` or a step), generated on this machine.
async fn sample(State(app): State<Arc<App>>, Path(id): Path<String>, Query(q): Params) -> Response {
    let id = match run_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let which = param(&q, "checkpoint").unwrap_or("best").to_string();
    let prompt = q.get("prompt").cloned().unwrap_or_else(|| "\n".into());
    let tokens = match param(&q, "tokens").map(str::parse::<usize>) {
        None => 200,
        Some(Ok(n)) if (1..=2000).contains(&n) => n,
        Some(_) => {
            return ApiError::bad("tokens", "tokens is a whole number from 1 to 2000")
                .into_response();
        }
    };
    let temperature = match param(&q, "temperature").map(str::parse::<f64>) {
        None => 0.8,
        Some(Ok(t)) if t.is_finite() && t >= 0.0 => t,
        Some(_) => {
            return ApiError::bad("temperature", "temperature is a number ≥ 0").into_response();
        }
    };
    let app2 = app.clone();
    let answer = app
        .read(move |store| {
            let run = store.run_by_id(id)?;
            let checkpoints = store.checkpoints(id)?;
            let chosen = crate::store::checkpoints::choose(&checkpoints, &which)
                .map_err(|m| ApiError::bad("checkpoint", format!("{}: {m}", run.name())))?;
            let dir = store.checkpoint_path(&chosen.path);
            let how = crate::train::Sampling {
                tokens,
                temperature,
                top_k: None,
                seed: 1337,
            };
            let _one = app2.sampling.lock();
            crate::train::verify_checkpoint(&dir, chosen.bytes.max(0) as u64, &chosen.blake3)
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    crate::train::sample(&run.spec.config, &dir, &prompt, &how)
                        .map_err(|e| e.to_string())
                })
                .map(|text| Sampled {
                    run: run.name(),
                    checkpoint: chosen.step,
                    prompt: prompt.clone(),
                    text,
                })
                .map_err(|e| ApiError {
                    status: 422,
                    message: format!("{}: {e}", run.name()),
                    param: Some("checkpoint"),
                    column: None,
                    text: None,
                })
        })
        .await;
    reply(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_and_others_are_not() {
        for ok in [
            "127.0.0.1:8765",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.0.0.1",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8765",
            "127.0.0.1.evil.example",
            "10.0.0.1:80",
            "",
            "[::2]:80",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
