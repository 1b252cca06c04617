//! Just enough of the W3C WebDriver protocol to drive Debian's Chromium
//! through `chromedriver`: open a page, find, click, type, read text.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(20);

/// A headless Chromium session; the browser and driver end when dropped.
pub struct Browser {
    driver: Child,
    client: reqwest::Client,
    session: String,
}

pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile in `profile`.
    pub async fn start(profile: &Path) -> Self {
        for tool in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(tool).exists(),
                "{tool} is missing: run `just test-tools` (installs Debian's chromium and chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while client.get(format!("{base}/status")).send().await.is_err() {
            assert!(started.elapsed() < WAIT, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,1600",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let created: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_owned();
        let browser = Self {
            driver,
            client,
            session: format!("{base}/session/{session}"),
        };
        // Elements that a page renders late are waited for, up to WAIT.
        browser
            .command("timeouts", json!({"implicit": WAIT.as_millis() as u64}))
            .await;
        browser
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let reply: Value = self
            .client
            .post(format!("{}/{path}", self.session))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if reply["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", reply["value"]["message"]);
        }
        reply["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// The first element matching the CSS selector, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .command("element", json!({"using": "css selector", "value": css}))
            .await;
        Element(
            found[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {found}"))
                .to_owned(),
        )
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        // Scrolled into view first: the page is long and clicks land on what is visible.
        self.command(
            "execute/sync",
            json!({"script": "arguments[0].scrollIntoView({block: 'center'});", "args": [{ELEMENT: element.0}]}),
        )
        .await;
        self.command(&format!("element/{}/click", element.0), json!({}))
            .await;
    }

    /// Types `text` into the field, as a user's key presses.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            &format!("element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        let reply: Value = self
            .client
            .get(format!("{}/element/{}/text", self.session, element.0))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        reply["value"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the element's text satisfies `done`; returns that text.
    pub async fn wait_for_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if done(&text) {
                return text;
            }
            assert!(
                started.elapsed() < WAIT,
                "{css} never showed what was awaited; last: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, and with it Chromium, before the driver: killing
        // the driver alone would leave the browser running.
        end_session(&self.session);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// `DELETE /session/ID`, synchronously (this runs in `drop`).
fn end_session(session_url: &str) {
    use std::io::{Read, Write};
    let Some(rest) = session_url.strip_prefix("http://") else {
        return;
    };
    let Some((host, path)) = rest.split_once('/') else {
        return;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(WAIT));
    let request = format!(
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}
