//! `xp ui`: serve the web dashboard of the run store.

use std::io::Write;
use std::net::IpAddr;

use super::output::Lossy;
use super::{Context, Error, Result, exit};
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// Address to listen on. Anything but loopback (127.0.0.1, ::1) is reachable from other
    /// machines, so the dashboard then asks for a token, printed in the address below.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    host: IpAddr,
    /// Open the dashboard in the default browser.
    #[arg(long)]
    open: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<u8> {
    // Brings an older store to this xp's schema (the one write `xp ui` may make); the
    // dashboard itself only reads.
    drop(ctx.open_existing_store()?);
    let token = (!args.host.is_loopback()).then(ui::new_token);
    let bound = ui::bind(ui::Options {
        db: ctx.db.clone(),
        host: args.host,
        port: args.port,
        token: token.clone(),
    })?;
    let addr = bound.addr();
    let host = if args.host.is_unspecified() || args.host.is_loopback() {
        if addr.is_ipv6() {
            "[::1]".to_string()
        } else {
            "127.0.0.1".to_string()
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let url = match &token {
        Some(t) => format!("http://{host}:{}/?token={t}", addr.port()),
        None => format!("http://{host}:{}/", addr.port()),
    };
    // Serving must not depend on anyone reading this (`xp ui | head -1`).
    let mut out = Lossy(std::io::stdout().lock());
    // The address comes first and alone on its line, for scripts.
    writeln!(out, "{url}")?;
    writeln!(
        out,
        "xp ui: serving {} read-only{}; Ctrl-C stops it",
        ctx.db.display(),
        if token.is_some() {
            " to other machines too (the address carries its token)"
        } else {
            ""
        }
    )?;
    out.flush()?;
    drop(out);
    if args.open {
        open_browser(&url);
    }
    bound.serve().map_err(Error::from)?;
    Ok(exit::OK)
}

/// Asks the desktop to open `url`; failing that, says so (the address is printed anyway).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        tracing::warn!("could not open a browser ({opener}: {e}); open {url} yourself");
    }
}
