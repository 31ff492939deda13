//! A small W3C WebDriver client for a local `chromedriver` driving headless Chromium: what
//! `xp bench ui` times page loads with and what the dashboard's browser tests drive. Only the
//! commands those need: open a page, run a script, take a screenshot.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no {what} found (looked for {looked}); on Debian: apt-get install chromium chromium-driver"
    )]
    NotInstalled { what: &'static str, looked: String },
    #[error("chromedriver did not start: {0}")]
    Start(String),
    #[error("WebDriver {command}: {message}")]
    Command { command: String, message: String },
}

/// Finds a program: `$env` if set, else the first of `names` on PATH.
fn find(env: &str, names: &[&str], what: &'static str) -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::NotInstalled {
        what,
        looked: format!("${env}, then {} on PATH", names.join(", ")),
    })
}

/// The Chromium and chromedriver this machine has (`XP_CHROMIUM`, `XP_CHROMEDRIVER` override).
pub fn installed() -> Result<(PathBuf, PathBuf), Error> {
    Ok((
        find(
            "XP_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
            "Chromium",
        )?,
        find("XP_CHROMEDRIVER", &["chromedriver"], "chromedriver")?,
    ))
}

/// A running chromedriver with one headless browser session; both end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `width` × `height` CSS
    /// pixels at device scale 1, so that screenshots are the same size everywhere.
    pub fn start(width: u32, height: u32) -> Result<Browser, Error> {
        let (chromium, chromedriver) = installed()?;
        Self::start_with(&chromium, &chromedriver, width, height)
    }

    pub fn start_with(
        chromium: &Path,
        chromedriver: &Path,
        width: u32,
        height: u32,
    ) -> Result<Browser, Error> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Start(e.to_string()))?
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Start(format!("{}: {e}", chromedriver.display())))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser
                .agent
                .get(&format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Start("not ready after 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--hide-scrollbars", "--force-device-scale-factor=1", "--font-render-hinting=none",
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let v = browser.send("POST", "/session", Some(caps))?;
        browser.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Start(format!("no session in {v}")))?
            .to_string();
        Ok(browser)
    }

    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        let url = format!("{}{path}", self.base);
        let fail = |message: String| Error::Command {
            command: format!("{method} {path}"),
            message,
        };
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.unwrap_or(json!({})).to_string()),
        };
        let mut response = response.map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!(
                "{}: {}",
                v["value"]["error"].as_str().unwrap_or("error"),
                v["value"]["message"].as_str().unwrap_or_default()
            )));
        }
        Ok(v["value"].clone())
    }

    fn session_path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.session)
    }

    /// Navigates and waits for the page's load event.
    pub fn goto(&self, url: &str) -> Result<(), Error> {
        self.send(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns what it returns.
    pub fn eval(&self, script: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.send(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Evaluates `expr` every 50 ms until it is truthy, up to `timeout`; returns its value, or
    /// the error names the expression and its last value.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(&format!("return ({expr});"), vec![])?;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(Error::Command {
                    command: format!("wait for `{expr}`"),
                    message: format!("still {v} after {timeout:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, Error> {
        use base64::Engine;
        let v = self.send("GET", &self.session_path("/screenshot"), None)?;
        let text = v.as_str().unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| Error::Command {
                command: "screenshot".into(),
                message: e.to_string(),
            })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.send("DELETE", &self.session_path(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
