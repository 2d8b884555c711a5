//! `pairgate demo`, the README's first command, as a user runs it: the real binary on
//! ephemeral ports, its printed commands followed, including the Video Indexer tenant's
//! failover with no 401.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use pairgate_test_support::{client, pairgate_bin, send};

/// Kills the demo when the test ends, whatever happens.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn videos(addr: &str) -> (u16, String) {
    let req = Request::get(format!("http://{addr}/Videos?pageSize=1&accessToken=stale"))
        .header(http::header::HOST, "videos.localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    match send(&client(), req).await {
        Ok(r) if r.status.is_success() => (
            r.status.as_u16(),
            r.json()["accountId"].as_str().unwrap_or("-").to_owned(),
        ),
        Ok(r) => (r.status.as_u16(), r.text()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_video_indexer_tenant_fails_over_with_no_401() {
    let mut child = Command::new(pairgate_bin().expect("binary"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            text.push_str(&line);
            text.push('\n');
            if line.contains("Ctrl-C stops the demo") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let text = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the demo printed its instructions");
    let addr = text
        .split("gateway on http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("gateway address")
        .to_owned();
    let control = text
        .lines()
        .find_map(|l| l.split("http://").nth(1)?.strip_suffix("/fail/vi-east"))
        .expect("control address for vi-east")
        .to_owned();
    assert!(text.contains("videos.localhost"), "{text}");

    // The first token is fetched at start; then the primary answers, the client's token gone.
    let mut first = (0, String::new());
    for _ in 0..100 {
        first = videos(&addr).await;
        if first.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, (200, "acc-vi-east".to_owned()));

    let fail = Request::post(format!("http://{control}/fail/vi-east"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&client(), fail).await.expect("control").status, 200);
    let mut seen = Vec::new();
    for _ in 0..200 {
        let r = videos(&addr).await;
        let done = r.1 == "acc-vi-west";
        seen.push(r);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen.last().map(|r| r.1.as_str()),
        Some("acc-vi-west"),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r.0 == 200), "{seen:?}");
    drop(demo);
}
