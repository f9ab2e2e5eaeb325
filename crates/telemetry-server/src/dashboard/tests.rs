//! The embedded files: every file of `assets/dashboard/` is served, with its headers, and the
//! page only refers to files that are.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::{ASSETS, CONTENT_SECURITY_POLICY, files, find};

fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard")
}

fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read the assets directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(&path, root, out);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            out.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_file_of_the_assets_directory_is_embedded_and_nothing_else() {
    let mut on_disk = BTreeSet::new();
    walk(&assets_dir(), &assets_dir(), &mut on_disk);
    on_disk.remove("vendor/README.md");
    let embedded: BTreeSet<String> = ASSETS.iter().map(|asset| asset.path.to_owned()).collect();
    assert_eq!(on_disk, embedded, "add new files to `ASSETS` in dashboard.rs");
}

async fn get(
    path: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response =
        files::<()>().oneshot(request.body(Body::empty()).expect("request")).await.expect("answer");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, headers, body)
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_type_and_policy() {
    let (status, headers, body) = get("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(headers.contains_key(header::ETAG));
    assert!(String::from_utf8(body).expect("utf-8").starts_with("<!doctype html>"));

    for (path, content_type) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/pages/room.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = get(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{path}");
        assert!(!body.is_empty(), "{path}");
    }
}

#[tokio::test]
async fn a_matching_etag_gets_304_and_a_changed_one_the_file() {
    let (_, headers, _) = get("/assets/app.js", None).await;
    let etag = headers[header::ETAG].to_str().expect("ascii").to_owned();
    let (status, headers, body) = get("/assets/app.js", Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], etag.as_str());
    assert!(body.is_empty());
    let (status, _, body) = get("/assets/app.js", Some("\"0000000000000000\"")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
    // Files differ, so do their tags.
    let (_, other, _) = get("/assets/api.js", None).await;
    assert_ne!(other[header::ETAG], etag.as_str());
}

#[tokio::test]
async fn an_unknown_file_is_a_404_with_an_error_body() {
    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/vendor/README.md"] {
        let (status, _, body) = get(path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}

fn text(path: &str) -> &'static str {
    std::str::from_utf8(find(path).expect("embedded").bytes).expect("utf-8")
}

#[test]
fn the_page_has_no_inline_script_or_style_and_refers_only_to_embedded_files() {
    let html = text("index.html");
    for script in html.split("<script").skip(1) {
        let tag = &script[..script.find('>').expect("a closed tag")];
        assert!(tag.contains("src=\"/assets/"), "inline script: <script{tag}>");
    }
    assert!(!html.contains("<style"), "inline style element");
    assert!(!html.contains(" style=\""), "inline style attribute");
    for reference in html.split("\"/assets/").skip(1) {
        let path = &reference[..reference.find('"').expect("closed")];
        assert!(
            find(path).is_some(),
            "index.html refers to `/assets/{path}`, which is not embedded"
        );
    }
}

#[test]
fn every_module_import_resolves_to_an_embedded_file() {
    for asset in ASSETS
        .iter()
        .filter(|asset| asset.path.ends_with(".js") && !asset.path.starts_with("vendor/"))
    {
        let source = text(asset.path);
        let dir = Path::new(asset.path).parent().expect("a parent");
        for line in source.lines().filter(|line| line.contains(" from '")) {
            let start = line.find(" from '").expect("found") + 7;
            let target = &line[start..start + line[start..].find('\'').expect("closed")];
            let mut resolved = dir.to_path_buf();
            for part in target.split('/') {
                match part {
                    "." => {}
                    ".." => {
                        resolved.pop();
                    }
                    part => resolved.push(part),
                }
            }
            let resolved = resolved.to_string_lossy().into_owned();
            assert!(
                find(&resolved).is_some(),
                "{} imports `{target}` (`{resolved}`): not embedded",
                asset.path
            );
        }
    }
}
