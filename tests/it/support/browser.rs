//! Real Chromium for the console tests, driven over WebDriver: each test starts its own
//! `chromedriver` (Debian packages `chromium` and `chromium-driver`, installed by
//! `scripts/test.sh`) on a free loopback port, with a headless Chromium and a fresh profile.
//! Screenshots go to `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Desktop and phone widths for screenshots.
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

pub struct Browser {
    pub client: Client,
    driver: Child,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium for the server at `base` (`http://127.0.0.1:port`).
    pub async fn open(base: String) -> Browser {
        Self::open_with(base, &[]).await
    }

    /// Starts Chromium whose microphone plays `wav` (once), granted to every page without asking.
    pub async fn with_microphone(base: String, wav: &std::path::Path) -> Browser {
        let file = format!("--use-file-for-fake-audio-capture={}%noloop", wav.display());
        Self::open_with(base, &["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", &file]).await
    }

    async fn open_with(base: String, extra_args: &[&str]) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian package chromium-driver; scripts/test.sh installs it)");
        let driver_url = format!("http://127.0.0.1:{port}");
        let ready = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{driver_url}/status")).await.is_err() {
            assert!(Instant::now() < ready, "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        capabilities.insert("goog:chromeOptions".into(), json!({ "args": args }));
        let client = ClientBuilder::rustls()
            .expect("TLS roots load")
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("Chromium starts");
        Browser { client, driver, base, _profile: profile }
    }

    pub async fn go(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The path (and query) of the page shown.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The first element matching `css`, waiting up to 10 s for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks something that changes the page in place (a `<summary>`, a checkbox).
    pub async fn press(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Clicks what leads to another page, and waits until that page has loaded.
    pub async fn click(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.unwrap();
        self.find(css).await.click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while old_page.tag_name().await.is_ok() {
            assert!(Instant::now() < deadline, "clicking {css} did not lead to another page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while self.client.execute("return document.readyState", vec![]).await.ok().and_then(|s| s.as_str().map(str::to_owned)).as_deref()
            != Some("complete")
        {
            assert!(Instant::now() < deadline, "the page after clicking {css} did not finish loading");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits up to 10 s for the element matching `css` to contain `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        self.wait_for_text_within(css, text, Duration::from_secs(10)).await;
    }

    /// Waits up to `patience` for the element matching `css` to contain `text`.
    pub async fn wait_for_text_within(&self, css: &str, text: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let shown = self.text(css).await;
            if shown.contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "{css} never showed `{text}`; it shows `{shown}`");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether an element matches `css`.
    pub async fn has(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    pub async fn sign_in(&self, email: &str, password: &str) {
        self.go("/sign-in").await;
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
    }

    /// Saves the page at desktop and at phone width, and checks that at phone width the page does
    /// not scroll sideways (wide tables scroll inside their own frame).
    pub async fn screenshot(&self, name: &str) {
        self.screenshot_at(name, "body").await;
    }

    /// [`Self::screenshot`] with the element `css` scrolled into view (a section far down a page).
    pub async fn screenshot_at(&self, name: &str, css: &str) {
        let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&folder).unwrap();
        for (label, (width, height)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.client.set_window_size(width, height).await.unwrap();
            self.client.execute("document.querySelector(arguments[0]).scrollIntoView()", vec![serde_json::json!(css)]).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            let fits = self
                .client
                .execute("return document.documentElement.scrollWidth <= document.documentElement.clientWidth", vec![])
                .await
                .unwrap();
            assert_eq!(fits, serde_json::json!(true), "{name} scrolls sideways at {label} width");
            std::fs::write(folder.join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.client.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
