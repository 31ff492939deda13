//! The dashboard's files, compiled into the binary: the page, its script and style, and the
//! vendored chart library (uPlot, MIT, its licence served beside it). A request names one of
//! these by its exact name or gets nothing: no path is ever joined onto a folder.

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub mime: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => $mime:literal),* $(,)?) => {
        pub const ASSETS: &[Asset] = &[
            $(Asset { name: $name, mime: $mime, bytes: include_bytes!(concat!("assets/", $name)) }),*
        ];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "app.js" => "text/javascript; charset=utf-8",
    "app.css" => "text/css; charset=utf-8",
    "uPlot.iife.min.js" => "text/javascript; charset=utf-8",
    "uPlot.min.css" => "text/css; charset=utf-8",
    "uPlot.LICENSE.txt" => "text/plain; charset=utf-8",
}

/// The file of that exact name.
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// A validator for caches: the first 16 hex digits of the file's blake3.
pub fn etag(asset: &Asset) -> String {
    format!("\"{}\"", &blake3::hash(asset.bytes).to_hex()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_names_resolve() {
        assert!(get("app.js").is_some());
        for bad in [
            "../app.js",
            "./app.js",
            "app.js/",
            "/app.js",
            "APP.JS",
            "%2e%2e/app.js",
            "",
        ] {
            assert!(get(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_chart_library_ships_with_its_licence() {
        let licence = std::str::from_utf8(get("uPlot.LICENSE.txt").unwrap().bytes).unwrap();
        assert!(licence.contains("MIT"), "{licence}");
        assert!(get("uPlot.iife.min.js").unwrap().bytes.len() > 10_000);
    }
}
