//! A real browser for the console's tests: Debian's Chromium, headless,
//! driven through its own `chromedriver` over the W3C WebDriver protocol
//! (plain JSON over HTTP, so no client library and nothing downloaded).
//! Every wait fails loudly; a failing scenario leaves a screenshot and the
//! page's HTML under `target/browser/`.

use base64::Engine;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where screenshots and failing pages go.
pub fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("browser")
}

pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// at 1366x768 (the command center's smallest screen).
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by deploy/local/install.sh)");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        let root = format!("http://127.0.0.1:{port}");
        eventually("chromedriver listening", Duration::from_secs(20), Duration::from_millis(100), || {
            let http = http.clone();
            let url = format!("{root}/status");
            async move { http.get(url).send().await.map_err(|e| e.to_string()) }
        })
        .await;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1366,768", "--lang=zh-CN", "--font-render-hinting=none"]
            }
        }}});
        let resp: Value = http.post(format!("{root}/session")).json(&caps).send().await.expect("new session").json().await.expect("json");
        let id = resp["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no browser session: {resp}")).to_owned();
        Browser { http, base: format!("{root}/session/{id}"), driver }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap_or_else(|e| panic!("webdriver {path}: {e}")).json().await.expect("webdriver json");
        if let Some(err) = resp["value"]["error"].as_str() {
            panic!("webdriver {path}: {err}: {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let resp: Value = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match resp["value"]["error"].as_str() {
            Some(err) => Err(format!("{err}: {}", resp["value"]["message"])),
            None => Ok(resp["value"].clone()),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    async fn element(&self, css: &str) -> Result<String, String> {
        let v = self.try_call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await?;
        v[ELEMENT].as_str().map(str::to_owned).ok_or_else(|| format!("no element id in {v}"))
    }

    /// Waits (up to `within`) for an element matching `css` whose text
    /// contains `text` (any text when empty); returns that text.
    pub async fn wait_text(&self, css: &str, text: &str, within: Duration) -> String {
        let what = if text.is_empty() { format!("{css} on the page") } else { format!("{css} showing {text:?}") };
        eventually(&what, within, Duration::from_millis(100), || async {
            let script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);";
            let got = self.try_call(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": [css]})).await?;
            let texts: Vec<String> = got.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            texts.iter().find(|t| t.contains(text)).cloned().ok_or(format!("{texts:?} at {}", self.url().await))
        })
        .await
    }

    /// The text of the first element matching `css` (it must be there).
    pub async fn text(&self, css: &str) -> String {
        let id = self.element(css).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None).await.as_str().unwrap_or_default().to_owned()
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.run("return document.querySelectorAll(arguments[0]).length;", json!([css])).await.as_u64().unwrap_or(0) as usize
    }

    /// Waits until at least `n` elements match `css`; returns how many.
    pub async fn wait_count(&self, css: &str, n: usize, within: Duration) -> usize {
        eventually(&format!("{n} of {css}"), within, Duration::from_millis(100), || async {
            let got = self.count(css).await;
            if got >= n { Ok(got) } else { Err(got) }
        })
        .await
    }

    /// Clicks the first element matching `css`. A live page may replace
    /// it between finding and clicking (the queue reloads its rows): then
    /// it is found again, as a person would look again.
    pub async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), Duration::from_secs(10), Duration::from_millis(100), || async {
            let id = self.element(css).await?;
            match self.try_call(reqwest::Method::POST, &format!("/element/{id}/click"), json!({})).await {
                Err(e) if e.starts_with("stale element reference") => Err(e),
                Err(e) => panic!("click {css}: {e}"),
                Ok(_) => Ok(()),
            }
        })
        .await
    }

    /// Types into a field, as a person would (key events).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
        self.call(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    /// Picks the option of `select_css` whose value is `value`.
    pub async fn choose(&self, select_css: &str, value: &str) {
        self.click(&format!("{select_css} option[value=\"{value}\"]")).await;
    }

    /// Saves a PNG of the viewport (the whole page height when `full`).
    pub async fn screenshot(&self, path: &std::path::Path, full: bool) {
        let old = if full {
            let h = self.run("return Math.min(4000, document.documentElement.scrollHeight);", json!([])).await.as_u64().unwrap_or(768);
            let r = self.call(reqwest::Method::GET, "/window/rect", None).await;
            self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": 1366, "height": h.max(768) + 140}))).await;
            Some(r)
        } else {
            None
        };
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap_or_default()).expect("a base64 PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(path, bytes).expect("write screenshot");
        if let Some(r) = old {
            self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": r["width"], "height": r["height"]}))).await;
        }
    }

    /// Runs one scenario; if it fails, saves the page's screenshot and
    /// HTML as `target/browser/<name>-failed.{png,html}` and fails with it.
    pub async fn scenario<F: std::future::Future<Output = ()>>(&self, name: &str, f: F) {
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(f)).await;
        if let Err(panic) = outcome {
            let dir = artifacts_dir();
            let png = dir.join(format!("{name}-failed.png"));
            self.screenshot(&png, false).await;
            let _ = std::fs::write(dir.join(format!("{name}-failed.html")), self.source().await);
            eprintln!("browser scenario {name} failed; its page is at {} (and .html beside it)", png.display());
            std::panic::resume_unwind(panic);
        }
    }

    pub async fn quit(self) {
        let _ = self.http.delete(self.base.clone()).send().await;
    }
}
