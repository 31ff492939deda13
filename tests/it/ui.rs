//! `xp ui`: the real binary serving a store the test fills, driven over HTTP and in headless
//! Chromium (Debian's chromium and chromium-driver, through a W3C WebDriver session).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use xp::ui::webdriver::Browser;

use crate::common::{CommandOutput, output, parse_json, repo, xp};

/// A running `xp ui`; stopped when dropped.
struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Server {
    fn start(db: &Path, args: &[&str]) -> Server {
        Self::start_with(xp(db), args)
    }

    fn start_with(mut cmd: std::process::Command, args: &[&str]) -> Server {
        let mut child = cmd
            .args(["ui", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().to_string();
        if !url.starts_with("http://") {
            // It printed something else, or nothing: it has ended, or will once stopped.
            let _ = child.kill();
            let mut out = std::process::Output {
                status: child.wait().unwrap(),
                stdout: line.into_bytes(),
                stderr: Vec::new(),
            };
            stdout.read_to_end(&mut out.stdout).unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_end(&mut out.stderr)
                .unwrap();
            let out = CommandOutput::new(format!("xp ui --port 0 {}", args.join(" ")), out);
            panic!("xp ui printed {url:?}, not its address:\n{out}");
        }
        let addr = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        Server { child, url, addr }
    }

    /// The page's address with `path` (which starts with `/`).
    fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends exactly `request` (no client normalises the path) and returns status and body.
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (
        status,
        format!("{}\n{body}", text.lines().next().unwrap_or_default()),
    )
}

fn get(addr: &str, path: &str) -> (u16, String) {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, text) = get(addr, path);
    let body = text.split_once('\n').map_or("", |b| b.1);
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
    )
}

/// A store of `runs` runs × `steps` steps as `xp bench store` writes it: units cycle through
/// eight, seeds count up, and the last run is left running halfway.
fn bench_store(dir: &Path, runs: usize, steps: u64) -> PathBuf {
    let db = dir.join("bench.db");
    output(
        xp(&dir.join("unused.db"))
            .args(["bench", "store", "--runs", &runs.to_string()])
            .args(["--steps", &steps.to_string(), "--out"])
            .arg(&db),
    )
    .success();
    db
}

/// The browser tests take turns: each drives a whole Chromium.
static BROWSER: Mutex<()> = Mutex::new(());

/// A headless Chromium, or `None` (the test says it is skipped) where none is installed,
/// except under `CI=true`: `.ci/run` installs chromium and chromium-driver.
fn browser(test: &str) -> Option<Browser> {
    match xp::ui::webdriver::installed() {
        Ok(_) => Some(Browser::start(1400, 1000).unwrap()),
        Err(e) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "{test}: {e}, and CI=true: .ci/run installs them");
            eprintln!("{test}: skipped: {e}");
            None
        }
    }
}

const LONG: Duration = Duration::from_secs(30);

/// Waits for `expr`; on a timeout, fails with what the page said under its chart.
fn wait(b: &Browser, expr: &str, timeout: Duration) -> Value {
    b.wait_for(expr, timeout).unwrap_or_else(|e| {
        let note = b
            .eval(
                "return document.getElementById('chart-note').textContent + ' | ' + \
                 document.getElementById('where-error').textContent + ' | ' + \
                 JSON.stringify(document.getElementById('curves').dataset);",
                vec![],
            )
            .unwrap_or_default();
        panic!("{e}; the page says: {note}")
    })
}

fn rows_shown(b: &Browser) -> Vec<i64> {
    let v = b
        .eval(
            "return [...document.querySelectorAll('#runs tr.run')].map(r => Number(r.dataset.id));",
            vec![],
        )
        .unwrap();
    serde_json::from_value(v).unwrap()
}

fn filter(b: &Browser, expr: &str) {
    b.eval(
        "document.body.dataset.ready = ''; document.getElementById('where').value = arguments[0]; \
         document.getElementById('apply').click();",
        vec![json!(expr)],
    )
    .unwrap();
    wait(b, "document.body.dataset.ready === '1'", LONG);
}

#[test]
fn the_table_lists_every_run_and_a_where_filter_leaves_exactly_its_rows() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("the_table_lists_every_run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 24, 40);
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    assert_eq!(rows_shown(&b), (1..=24).collect::<Vec<i64>>());
    // The swept settings are columns.
    let headers = b
        .eval(
            "return [...document.querySelectorAll('#runs thead th')].map(t => t.title);",
            vec![],
        )
        .unwrap();
    for key in ["train.seed", "model.ffn.unit", "best_val_loss"] {
        assert!(
            headers.as_array().unwrap().contains(&json!(key)),
            "{headers}"
        );
    }
    let expr = "model.ffn.unit = 'gtu' or (train.seed >= 20 and best_val_loss < 1.6)";
    filter(&b, expr);
    let out = output(xp(&db).args(["runs", "--where", expr, "--format", "json"])).success();
    let want: Vec<i64> = parse_json(&out)
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    // Units cycle glu, mlp, gtu, …: gtu is runs 3, 11 and 19; of seeds 20–23, only run 21
    // (reglu) reached below 1.6; run 24 is still running, without a summary.
    assert_eq!(want, vec![3, 11, 19, 21]);
    assert_eq!(rows_shown(&b), want);
    // Sorting by a column asks the server, which orders by that key: a first click sorts
    // ascending, a second descending.
    for _ in 0..2 {
        b.eval(
            "document.body.dataset.ready = ''; \
             document.querySelector('#runs th[data-sort=\"best_val_loss\"]').click();",
            vec![],
        )
        .unwrap();
        wait(&b, "document.body.dataset.ready === '1'", LONG);
    }
    let out = output(xp(&db).args([
        "runs",
        "--where",
        expr,
        "--sort",
        "best_val_loss:desc",
        "--format",
        "json",
    ]))
    .success();
    let want: Vec<i64> = parse_json(&out)
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(want, vec![21, 19, 11, 3]);
    assert_eq!(rows_shown(&b), want);
}

#[test]
fn a_bad_filter_shows_its_error_with_the_column_in_the_page() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("a_bad_filter_shows_its_error") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 4, 20);
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    filter(&b, "train.lr > 0 and model.ffn.unti = 'glu'");
    let shown = b
        .eval(
            "const e = document.getElementById('where-error'); return e.hidden ? null : e.textContent;",
            vec![],
        ).unwrap();
    assert_eq!(
        shown,
        json!(
            "--where: column 18: unknown key `model.ffn.unti`; did you mean `model.ffn.unit`?\n  \
             train.lr > 0 and model.ffn.unti = 'glu'\n                   ^"
        )
    );
    // The table keeps the runs it had: a typo loses nothing on the page.
    assert_eq!(rows_shown(&b), vec![1, 2, 3, 4]);
    filter(&b, "(run > 2");
    let shown = b
        .eval(
            "return document.getElementById('where-error').textContent;",
            vec![],
        )
        .unwrap();
    assert_eq!(
        shown,
        json!(
            "--where: column 9: expected `)`, found the end of the expression\n  (run > 2\n          ^"
        )
    );
    filter(&b, "run > 2");
    assert_eq!(
        b.eval(
            "return document.getElementById('where-error').hidden;",
            vec![]
        )
        .unwrap(),
        json!(true)
    );
    assert_eq!(rows_shown(&b), vec![3, 4]);
}

#[test]
fn grouping_by_a_setting_draws_each_group_as_a_mean_with_a_band() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("grouping_draws_a_band") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 17, 30);
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    wait(
        &b,
        "document.getElementById('curves').dataset.bands === '0'",
        LONG,
    );
    b.eval(
        "const g = document.getElementById('group'); g.value = 'model.ffn.unit'; \
         g.dispatchEvent(new Event('change'));",
        vec![],
    )
    .unwrap();
    wait(
        &b,
        "document.getElementById('curves').dataset.bands === '8'",
        LONG,
    );
    let legend = b
        .eval(
            "return [...document.querySelectorAll('#legend li[data-kind=group]')].map(l => l.textContent);",
            vec![],
        ).unwrap();
    // 17 runs over 8 units: glu has three (runs 1, 9, 17), the others two.
    assert_eq!(legend[0], json!("model.ffn.unit = glu (3 runs)"));
    assert_eq!(legend[1], json!("model.ffn.unit = mlp (2 runs)"));
    assert_eq!(legend.as_array().unwrap().len(), 8);
    // The table groups too, with each group's best validation loss.
    let groups = b
        .eval(
            "return [...document.querySelectorAll('#runs tr.group')].map(g => g.textContent);",
            vec![],
        )
        .unwrap();
    assert!(
        groups[0]
            .as_str()
            .unwrap()
            .starts_with("model.ffn.unit = glu · 3 runs · best val mean"),
        "{groups}"
    );
    // The band the page drew is the server's: mean between min and max at every point.
    let (_, c) = get_json(
        &server.addr,
        "/api/curves?runs=1,9,17&metric=val_loss&group=model.ffn.unit",
    );
    let band = &c["groups"][0]["band"];
    let n = band["x"].as_array().unwrap().len();
    assert_eq!(n, 30);
    for i in 0..n {
        let (lo, mean, hi) = (
            band["lo"][i].as_f64().unwrap(),
            band["mean"][i].as_f64().unwrap(),
            band["hi"][i].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi && lo < hi, "{i}: {lo} {mean} {hi}");
    }
    // run-17 is still running at step 15: the last 15 steps average the other two.
    assert_eq!(band["n"][0], json!(3));
    assert_eq!(band["n"][29], json!(2));
}

/// Records metric rows for a run as a training writer does: one transaction.
fn append_metrics(db: &Path, run: i64, steps: std::ops::RangeInclusive<i64>) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let tx = conn.transaction().unwrap();
    for step in steps.clone() {
        for name in ["train_loss", "val_loss"] {
            tx.execute(
                "INSERT INTO metrics (run_id, name_id, step, value, t_ms)
                 VALUES (?1, (SELECT id FROM metric_names WHERE name = ?2), ?3, ?4, ?5)",
                rusqlite::params![run, name, step, 1.0 + 1.0 / step as f64, step * 12],
            )
            .unwrap();
        }
    }
    tx.execute(
        "UPDATE runs SET step = ?2 WHERE id = ?1",
        rusqlite::params![run, *steps.end()],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[test]
fn metric_rows_appended_while_the_page_is_open_reach_its_chart_within_2_s() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("appended_rows_reach_the_chart") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // run-3 is left running at step 20 of 40.
    let db = bench_store(dir.path(), 3, 40);
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    let last_x = "JSON.parse(document.getElementById('curves').dataset.runs || '{}')['3']";
    assert_eq!(wait(&b, last_x, LONG), json!(20));
    wait(
        &b,
        "document.getElementById('live').classList.contains('on')",
        LONG,
    );
    append_metrics(&db, 3, 21..=27);
    assert_eq!(
        wait(
            &b,
            &format!("{last_x} === 27 && 27"),
            Duration::from_secs(2)
        ),
        json!(27)
    );
    // The row's step moved too, without a reload.
    wait(
        &b,
        "document.querySelector('#runs tr.run[data-id=\"3\"] td:nth-child(5)').textContent === '27/40'",
        Duration::from_secs(2),
    );
    // Smoothing went on from the page's curve: the smoothed point the stream sent for step 27
    // is the one a fresh request computes over the whole series.
    let page_value = b
        .eval(
            "const t = window.xpChartTables(); return t.smooth['3'];",
            vec![],
        )
        .unwrap();
    let (_, fresh) = get_json(
        &server.addr,
        "/api/curves?runs=3&metric=val_loss&smooth=debiased&param=0.6",
    );
    let want = fresh["series"][0]["smooth"]["y"].as_array().unwrap();
    assert_eq!(page_value, *want.last().unwrap());
}

#[test]
fn the_run_page_diffs_only_the_settings_that_differ_with_their_layers() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("the_run_page_diffs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 3, 20);
    let server = Server::start(&db, &[]);
    b.goto(&server.at("/#/run/1")).unwrap();
    wait(
        &b,
        "document.querySelectorAll('#diff tr.diff').length > 0",
        LONG,
    );
    let rows = b
        .eval(
            "return [...document.querySelectorAll('#diff tr.diff')].map(r => [...r.cells].map(c => c.textContent));",
            vec![],
        ).unwrap();
    assert_eq!(
        rows,
        json!([
            ["model.ffn.unit", "glu", "sweep", "mlp", "sweep"],
            ["train.seed", "0", "sweep", "1", "sweep"],
        ])
    );
    let out = output(xp(&db).args(["compare", "run-1", "run-2", "--format", "json"])).success();
    let compared = parse_json(&out);
    let keys: Vec<&str> = compared["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["setting"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["model.ffn.unit", "train.seed"]);
    assert!(
        b.eval(
            "return document.getElementById('diff-note').textContent;",
            vec![]
        )
        .unwrap()
        .as_str()
        .unwrap()
        .starts_with("2 of ")
    );
    // Against run-3: other keys differ, and only those are listed.
    b.eval(
        "const s = document.getElementById('diff-with'); s.value = '3'; s.dispatchEvent(new Event('change'));",
        vec![],
    )
    .unwrap();
    wait(
        &b,
        "document.getElementById('diff-b').textContent === 'run-3'",
        LONG,
    );
    let keys = b
        .eval(
            "return [...document.querySelectorAll('#diff tr.diff')].map(r => r.dataset.key);",
            vec![],
        )
        .unwrap();
    assert_eq!(keys, json!(["model.ffn.unit", "train.seed"]));
}

#[test]
fn static_routes_never_leave_the_embedded_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 1, 5);
    let server = Server::start(&db, &[]);
    let (status, body) = get(&server.addr, "/assets/app.js");
    assert_eq!(status, 200, "{body}");
    for path in [
        "/assets/../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/%2E%2E%2FCargo.toml",
        "/assets/..%2fapp.js",
        "/assets/..%5capp.js",
        "/assets/%252e%252e/Cargo.toml",
        "/assets/./app.js",
        "/assets//etc/passwd",
        "/assets/app.js%00.css",
        "/%2e%2e/%2e%2e/etc/passwd",
        "//etc/passwd",
        "/assets/",
        "/assets/src/ui/assets/app.js",
    ] {
        let (status, body) = get(&server.addr, path);
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(
            !body.contains("[package]") && !body.contains("root:") && !body.contains("use strict"),
            "{path}: {body}"
        );
    }
}

#[test]
fn loopback_by_default_and_a_token_when_listening_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 1, 5);
    let local = Server::start(&db, &[]);
    assert!(local.url.starts_with("http://127.0.0.1:"), "{}", local.url);
    assert!(!local.url.contains("token"));
    // Another site's page whose name resolves to 127.0.0.1 sends its own Host.
    let (status, body) = raw(
        &local.addr,
        "GET /api/runs HTTP/1.1\r\nHost: evil.example:8765\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(get(&local.addr, "/api/runs").0, 200);
    drop(local);

    let open = Server::start(&db, &["--host", "0.0.0.0"]);
    let token = open.url.split("token=").nth(1).expect("a token in the URL");
    assert_eq!(token.len(), 32, "{}", open.url);
    let port = open.addr.rsplit(':').next().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let (status, body) = get(&addr, "/api/runs");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("this dashboard needs its token"), "{body}");
    assert_eq!(
        get(&addr, &format!("/api/runs?token={}x", &token[1..])).0,
        401
    );
    let (status, head) = raw(
        &addr,
        &format!("GET /?token={token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    let (status, _) = raw(
        &addr,
        &format!(
            "GET /api/runs HTTP/1.1\r\nHost: x\r\nCookie: xp_ui_token={token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200);
}

#[test]
fn queries_reach_sql_only_as_bound_parameters_and_errors_name_their_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let db = bench_store(dir.path(), 3, 5);
    let server = Server::start(&db, &[]);
    let (status, v) = get_json(
        &server.addr,
        "/api/runs?where=experiment%20%3D%20%22x%27)%3B%20DROP%20TABLE%20runs%3B%20--%22",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([]));
    let (status, v) = get_json(&server.addr, "/api/runs?sort=run%3B%20DROP%20TABLE%20runs");
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], json!("sort"));
    let (_, v) = get_json(&server.addr, "/api/runs");
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
    for (path, param, message) in [
        (
            "/api/curves?runs=1&smooth=ema&param=1.5",
            "smooth",
            "smoothing weight 1.5 is outside [0, 1)",
        ),
        (
            "/api/curves?runs=1&x=epoch",
            "x",
            "unknown x axis `epoch`: use step, tokens or time",
        ),
        (
            "/api/curves?runs=1,two",
            "runs",
            "`two` is not a run (use run-N or N)",
        ),
        (
            "/api/curves?runs=1&group=model.ffn.unti",
            "group",
            "cannot group by `model.ffn.unti`; did you mean `model.ffn.unit`?",
        ),
    ] {
        let (status, v) = get_json(&server.addr, path);
        assert_eq!(status, 400, "{path}: {v}");
        assert_eq!(
            v["error"],
            json!({ "param": param, "message": message }),
            "{path}"
        );
    }
    let (status, v) = get_json(&server.addr, "/api/runs/99");
    assert_eq!(status, 404);
    assert_eq!(
        v["error"]["message"],
        json!("no run `run-99` in the store (runs are named run-N; `xp runs` lists them)")
    );
}

#[test]
fn a_long_curve_is_sent_as_at_most_2000_points_with_its_extremes() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1 completed its 30,000 steps (run 2 is left running halfway).
    let db = bench_store(dir.path(), 2, 30_000);
    let server = Server::start(&db, &[]);
    let (status, v) = get_json(
        &server.addr,
        "/api/curves?runs=1&metric=train_loss&smooth=ema&param=0.9",
    );
    assert_eq!(status, 200);
    let s = &v["series"][0];
    assert_eq!(s["points"], json!(30_000));
    let raw: Vec<f64> = serde_json::from_value(s["raw"]["y"].clone()).unwrap();
    let smooth: Vec<f64> = serde_json::from_value(s["smooth"]["y"].clone()).unwrap();
    assert!(
        raw.len() <= 2000 && smooth.len() <= 2000,
        "{} {}",
        raw.len(),
        smooth.len()
    );
    // The full series' minimum and maximum are among the points sent.
    let conn = crate::common::conn(&db);
    let (lo, hi): (f64, f64) = conn
        .query_row(
            "SELECT min(value), max(value) FROM metrics WHERE run_id = 1
             AND name_id = (SELECT id FROM metric_names WHERE name = 'train_loss')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(raw.contains(&lo) && raw.contains(&hi));
}

/// The store the README's screenshot shows: `docs/example/runs.db`, the shipped example.
fn example_store(dir: &Path) -> PathBuf {
    let db = dir.join("runs.db");
    std::fs::copy(repo().join("docs/example/runs.db"), &db).unwrap();
    db
}

#[test]
fn the_readme_screenshot_is_the_example_store_in_this_browser() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("the_readme_screenshot") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    example_store(dir.path());
    // Named as a user in that folder would name it, so that the page shows `runs.db`.
    let mut cmd = xp(Path::new("runs.db"));
    cmd.current_dir(dir.path());
    let server = Server::start_with(cmd, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    let (_, runs) = get_json(&server.addr, "/api/runs");
    // The main job's 14 runs: seven units, each with α fixed at 0.5 and learnable.
    assert_eq!(runs["rows"].as_array().unwrap().len(), 14);
    assert_eq!(rows_shown(&b), (1..=14).collect::<Vec<i64>>());
    b.eval(
        "const m = document.getElementById('metric'); m.value = 'train_loss'; \
         m.dispatchEvent(new Event('change')); \
         const g = document.getElementById('group'); g.value = 'model.ffn.alpha'; \
         g.dispatchEvent(new Event('change'));",
        vec![],
    )
    .unwrap();
    wait(
        &b,
        "document.getElementById('curves').dataset.bands === '2'",
        LONG,
    );
    // The live dot settles, so that the picture does not depend on timing.
    wait(
        &b,
        "document.getElementById('live').classList.contains('on')",
        LONG,
    );
    std::thread::sleep(Duration::from_millis(300));
    let png = b.screenshot().unwrap();
    assert_eq!(&png[1..4], b"PNG");
    std::fs::write(repo().join("docs/dashboard.png"), png).unwrap();
}

#[test]
fn an_early_stopped_sweep_shows_its_rungs_and_marks_each_decision_on_the_curves() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("an_early_stopped_sweep_shows_its_rungs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = crate::common::tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"es\"\n[sweep.grid]\n\
         \"train.lr\" = [3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 8e-3, 1e-2, 2e-2, 3e-2]\n\
         [sweep.early_stop]\nmethod = \"asha\"\nmin_steps = 5\neta = 3\n",
    );
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest).args([
        "--set",
        "train.steps=45",
        "--set",
        "train.eval_every=5",
        "--set",
        "train.min_lr=1e-5",
    ]))
    .success();
    let log = output(xp(&db).args(["export", "decisions", "es", "--format", "jsonl"])).success();
    let count = |action: &str| {
        log.stdout
            .lines()
            .filter(|l| l.contains(&format!("\"action\":\"{action}\"")))
            .count()
    };
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    let panel = b
        .eval(
            "const p = document.getElementById('searches'); \
             return [p.hidden, p.querySelector('h2').textContent, \
                     p.querySelectorAll('table.rungs tbody tr').length];",
            vec![],
        )
        .unwrap();
    assert_eq!(panel[0], json!(false));
    assert!(
        panel[1]
            .as_str()
            .unwrap()
            .starts_with("es: ASHA on val_loss"),
        "{panel}"
    );
    assert_eq!(panel[2], json!(2), "rungs at steps 5 and 15 of 45");
    // Every decision is a mark on its run's curve (the 9 runs are all drawn).
    let marks = wait(&b, "document.getElementById('curves').dataset.marks", LONG);
    let marks: Value = serde_json::from_str(marks.as_str().unwrap()).unwrap();
    assert_eq!(
        marks,
        json!({"promoted": count("promote"), "stopped": count("stop"), "paused": 0})
    );
    assert!(count("stop") > 0 && count("promote") > 0, "{log}");
}

#[test]
fn a_search_shows_its_trials_their_objective_and_the_best_so_far() {
    let _turn = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(b) = browser("a_search_shows_its_trials") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let manifest = crate::common::tiny_manifest(
        dir.path(),
        "[experiment]\nname = \"tpe\"\n[sweep.search]\nmethod = \"tpe\"\ntrials = 6\n\
         startup_trials = 3\nlag = 1\n[sweep.search.space]\n\
         \"train.lr\" = { loguniform = [3e-4, 3e-2] }\n\
         \"model.ffn.unit\" = { choice = [\"glu\", \"gelu\"] }\n",
    );
    let db = dir.path().join("runs.db");
    output(xp(&db).arg("run").arg(&manifest).args([
        "--set",
        "train.steps=10",
        "--set",
        "train.eval_every=5",
    ]))
    .success();
    let status = output(xp(&db).arg("status")).success();
    let server = Server::start(&db, &[]);
    b.goto(&server.url).unwrap();
    wait(&b, "document.body.dataset.ready === '1'", LONG);
    wait(
        &b,
        "document.querySelector('#trials .trial-chart canvas') !== null",
        LONG,
    );
    let panel = b
        .eval(
            "const p = document.getElementById('trials'); \
             const rows = [...p.querySelectorAll('table.trials tbody tr')]; \
             return [p.hidden, p.querySelector('h2').textContent, rows.length, \
                     [...p.querySelectorAll('table.trials thead th')].map(t => t.textContent), \
                     rows.map(r => r.children[5].textContent), \
                     p.querySelectorAll('tr.best').length];",
            vec![],
        )
        .unwrap();
    assert_eq!(panel[0], json!(false));
    assert!(
        panel[1]
            .as_str()
            .unwrap()
            .starts_with("tpe: TPE over train.lr, model.ffn.unit: 6 trials"),
        "{panel}"
    );
    assert_eq!(panel[2], json!(6));
    assert_eq!(
        panel[3],
        json!([
            "trial",
            "run",
            "status",
            "step",
            "objective",
            "best so far",
            "train.lr",
            "model.ffn.unit"
        ])
    );
    // The best so far never rises, and ends at the best trial, the one row marked.
    let best: Vec<f64> = panel[4]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(best.windows(2).all(|w| w[1] <= w[0]), "{best:?}");
    assert_eq!(panel[5], json!(1));
    assert!(
        status.stdout.contains(&format!("{:.4}", best[5])),
        "the terminal and the dashboard agree on the best\n{status}"
    );
}
