//! A real headless browser for tests: Chromium driven over WebDriver by
//! `chromedriver` (Debian's `chromium` and `chromium-driver`), on a free
//! loopback port, stopped when dropped. The WebDriver calls a console test
//! needs, over plain HTTP: open a page, run a script, take a screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services::{free_port, http_request};

/// A Chromium session.
pub struct Browser {
    driver: Child,
    addr: String,
    session: String,
}

fn program(name: &str, also: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed; run scripts/test.sh, or `apt-get install -y chromium chromium-driver`")
        })
}

/// The JSON string of `text`.
fn json_string(text: &str) -> String {
    serde_json_lite::quote(text)
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session.
    pub fn start() -> Browser {
        let driver_program = program("chromedriver", &["/usr/bin", "/usr/lib/chromium"]);
        let chromium = program("chromium", &["/usr/bin"]);
        let port = free_port();
        let driver = Command::new(driver_program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Root (as in CI containers) needs --no-sandbox; /dev/shm may be small.
        let capabilities = format!(
            "{{\"capabilities\":{{\"alwaysMatch\":{{\"goog:chromeOptions\":{{\"binary\":{},\
             \"args\":[\"--headless=new\",\"--no-sandbox\",\"--disable-gpu\",\"--disable-dev-shm-usage\",\"--window-size=1280,900\"]}}}}}}}}",
            json_string(&chromium.to_string_lossy())
        );
        let (status, answer) = http_request(&addr, "POST", "/session", &[], Some(&capabilities));
        assert_eq!(status, 200, "chromedriver refused a session: {answer}");
        let session = serde_json_lite::find_string(&answer, "sessionId").expect("a session id");
        Browser { driver, addr, session }
    }

    fn call(&self, method: &str, path: &str, json: Option<&str>) -> String {
        let path = format!("/session/{}{path}", self.session);
        let (status, answer) = http_request(&self.addr, method, &path, &[], json);
        assert_eq!(status, 200, "WebDriver {method} {path}: {answer}");
        answer
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&format!("{{\"url\":{}}}", json_string(url))));
    }

    /// Runs `script` (a function body; `return` a string) in the page, and
    /// returns what it returned, as JSON text.
    pub fn run(&self, script: &str) -> String {
        let answer =
            self.call("POST", "/execute/sync", Some(&format!("{{\"script\":{},\"args\":[]}}", json_string(script))));
        serde_json_lite::value_text(&answer)
    }

    /// The text of the element `selector` selects ("" when there is none).
    pub fn text(&self, selector: &str) -> String {
        let script =
            format!("const e = document.querySelector({}); return e ? e.innerText : '';", json_string(selector));
        serde_json_lite::unquote(&self.run(&script))
    }

    /// Waits until the text of `selector` satisfies `done`; its text then.
    pub fn wait_for_text(&self, selector: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text(selector);
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "{selector} never showed what was awaited; it shows: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a screenshot of the page as a PNG file.
    pub fn screenshot(&self, file: &Path) {
        let answer = self.call("GET", "/screenshot", None);
        let encoded = serde_json_lite::find_string(&answer, "value").expect("a screenshot");
        let png = base64_decode(&encoded);
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(file, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http_request(&self.addr, "DELETE", &path, &[], None));
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut bytes = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        let count = group.len().saturating_sub(1);
        for i in 0..count {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    bytes
}

/// Just enough JSON for WebDriver's answers, without a JSON crate in this
/// support crate.
mod serde_json_lite {
    /// `text` as a JSON string literal.
    pub fn quote(text: &str) -> String {
        let mut quoted = String::from("\"");
        for character in text.chars() {
            match character {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        quoted
    }

    /// The string a JSON string literal (starting at its quote) holds.
    pub fn unquote(literal: &str) -> String {
        let mut text = String::new();
        let mut characters = literal.trim().strip_prefix('"').unwrap_or("").chars();
        while let Some(character) = characters.next() {
            match character {
                '"' => break,
                '\\' => match characters.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('u') => {
                        let code: String = characters.by_ref().take(4).collect();
                        if let Some(c) = u32::from_str_radix(&code, 16).ok().and_then(char::from_u32) {
                            text.push(c);
                        }
                    }
                    Some(other) => text.push(other),
                    None => break,
                },
                c => text.push(c),
            }
        }
        text
    }

    /// The string value of the first `"key": "..."` in `json`.
    pub fn find_string(json: &str, key: &str) -> Option<String> {
        let at = json.find(&format!("\"{key}\""))?;
        let rest = &json[at + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        rest.starts_with('"').then(|| unquote(rest))
    }

    /// The text of the top-level `"value"` of a WebDriver answer.
    pub fn value_text(json: &str) -> String {
        let Some(at) = json.find("\"value\"") else { return String::new() };
        let rest = json[at + 7..].trim_start().strip_prefix(':').unwrap_or("").trim();
        rest.strip_suffix('}').unwrap_or(rest).trim().to_string()
    }
}
