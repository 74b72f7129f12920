//! The ops page in real headless Chromium, driven through chromedriver's
//! W3C WebDriver HTTP protocol (a handful of JSON calls, made with the
//! reqwest the tests already use). Needs Debian's `chromium` and
//! `chromium-driver`; `scripts/test.sh` installs them when missing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{KEY, Mode, TestEnv, open_projects, shared_backend};
use serde_json::{Value, json};

/// The whole test, browser included, must end within this.
const TEST_LIMIT: Duration = Duration::from_secs(150);

/// The element reference in a WebDriver answer: an object whose one value
/// is the id (under the W3C web element identifier key).
fn element_id(v: &Value) -> Option<String> {
    v.as_object()?.values().next()?.as_str().map(str::to_string)
}

fn chromium_binary() -> String {
    // Debian's /usr/bin/chromium is a shell wrapper; chromedriver wants the
    // browser itself.
    std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/lib/chromium/chromium").exists() {
            "/usr/lib/chromium/chromium".into()
        } else {
            "chromium".into()
        }
    })
}

/// A chromedriver process and one browser session; both end on drop.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    async fn start(dir: &std::path::Path) -> Browser {
        let port = common::free_port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log");
        let driver = Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()),
        )
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("chromedriver is not installed: apt-get install -y chromium chromium-driver (scripts/test.sh does this)");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let mut browser = Browser {
            driver,
            http,
            base,
            session: String::new(),
        };
        let v = browser.call("POST", "/session", caps).await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if self.session.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let r = req.send().await.expect("webdriver request");
        let status = r.status();
        let v: Value = r.json().await.expect("webdriver json");
        assert!(
            status.is_success(),
            "webdriver {method} {path}: {status} {v}"
        );
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    /// The first element matching `css`, waiting up to `secs` for it.
    async fn find(&self, css: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let r = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("find");
            if r.status().is_success() {
                let v: Value = r.json().await.expect("json");
                return element_id(&v["value"]).expect("element id");
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} after {secs} s; page text:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn body_text(&self) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let Ok(r) = self
            .http
            .post(url)
            .json(&json!({"using": "css selector", "value": "body"}))
            .send()
            .await
        else {
            return String::new();
        };
        let v: Value = r.json().await.unwrap_or(Value::Null);
        match element_id(&v["value"]) {
            Some(id) => self.text(&id).await,
            None => String::new(),
        }
    }

    /// Waits until `css`'s text contains `needle`.
    async fn wait_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let e = self.find(css, secs).await;
            // The page re-renders every few seconds: a stale element is retried.
            let url = format!("{}/session/{}/element/{e}/text", self.base, self.session);
            if let Ok(r) = self.http.get(url).send().await
                && let Ok(v) = r.json::<Value>().await
                && let Some(t) = v["value"].as_str()
                && t.contains(needle)
            {
                return t.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {needle:?}; page text:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), json!({}))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends the browser; then the driver goes.
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        let client = reqwest::Client::builder()
                            .timeout(Duration::from_secs(10))
                            .build();
                        if let Ok(c) = client {
                            let _ = c.delete(url).send().await;
                        }
                    });
                }
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_failed_job_and_its_retry_button_works() {
    let mut env = TestEnv::new(Mode::Scale).await;
    let result = tokio::time::timeout(TEST_LIMIT, scenario(&mut env)).await;
    assert!(
        result.is_ok(),
        "ops page test exceeded {TEST_LIMIT:?}\n{}",
        env.dump_logs()
    );
}

async fn scenario(env: &mut TestEnv) {
    env.spawn("api", &["api"], &[]);
    env.spawn(
        "worker",
        &["worker", "--queues", "predict,maintenance"],
        &[],
    );
    env.wait_ready().await;
    let c = env.client();
    // No model is trained here: a prediction fails for good.
    let ids = open_projects(&shared_backend(), 1).await;
    let id = c.predict(&["risk"], &ids).await;
    let job = c.wait_job(&id, 60).await;
    assert_eq!(job["status"], "failed", "{job}");
    let first_finish = job["finished_at"].as_str().expect("finished").to_string();

    let browser = Browser::start(&env.dir).await;
    browser.goto(&format!("{}/ops", env.base())).await;
    // The shell loads without the key and asks for it.
    let input = browser.find("#key-form:not([hidden]) #api-key", 20).await;
    browser.type_into(&input, KEY).await;
    let save = browser.find("#save-key", 5).await;
    browser.click(&save).await;

    // The failed job, its error and a Retry button.
    let row = format!("#failed-jobs tr[data-job=\"{id}\"]");
    let text = browser.wait_text(&row, &id, 20).await;
    assert!(text.contains("no production model"), "row: {text}");
    browser.wait_text("#queues", "predict", 10).await;
    browser.wait_text("#workers", "alive", 10).await;
    browser.wait_text("#drift", "no drift report yet", 10).await;
    let retry = browser
        .find(&format!("{row} button[data-retry=\"{id}\"]"), 10)
        .await;
    browser.click(&retry).await;

    // The click went through the API: same job, retried once, ran again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (_, page) = c.get("/api/v1/jobs?kind=predict").await;
        let j = page["jobs"][0].clone();
        if j["retries"] == 1 && j["status"] == "failed" {
            break j;
        }
        assert!(Instant::now() < deadline, "retry never ran: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["job_id"], id.as_str());
    assert!(
        job["previous_error"]
            .as_str()
            .is_some_and(|e| e.contains("no production model")),
        "{job}"
    );
    let (_, full) = c.get(&format!("/api/v1/jobs/{id}")).await;
    assert_ne!(full["finished_at"], first_finish.as_str(), "{full}");
    // And the page shows it with its retry count.
    browser.wait_text(&row, "failed", 20).await;
    drop(browser);
}
