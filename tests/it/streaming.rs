//! Large bodies stream both ways through the real binary with bounded gateway memory.

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pairgate_mock::{Fnv64, pattern_fnv64};
use pairgate_test_support::{GatewayProcess, MockConfig, MockUpstream, WAIT};

use crate::support::temp_path;

/// Bytes streamed each way; `PAIRGATE_IT_STREAM_MIB` raises it (the closing note's 1 GiB run).
fn stream_bytes() -> u64 {
    std::env::var("PAIRGATE_IT_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(128)
        << 20
}

/// Peak RSS the gateway may reach while streaming; generous against allocator noise, far
/// below the body size.
const MAX_GATEWAY_HWM_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_download_stream_with_bounded_memory() {
    let mock = MockUpstream::start(MockConfig::new("big", "eastus"))
        .await
        .expect("mock");
    let toml = format!(
        r#"
[listen]
http = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[region]]
name = "eastus"
[[account]]
name = "big"
region = "eastus"
url = "{}"
[[tenant]]
name = "bulk"
hosts = ["bulk.example.com"]
primary = "big"
"#,
        mock.url()
    );
    let gw = GatewayProcess::spawn(&temp_path("stream.toml"), &toml, &[]).expect("gateway process");
    let total = stream_bytes();
    let baseline = gw.proc_status_kib("VmRSS").expect("rss");

    // Upload: a generated body, never held whole by the test either.
    let chunk = Bytes::from((0..65_536u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let chunks = total / chunk.len() as u64;
    let mut expected = Fnv64::new();
    for _ in 0..chunks {
        expected.update(&chunk);
    }
    let body_chunk = chunk.clone();
    let body = StreamBody::new(stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(Frame::data(body_chunk.clone()))),
    ));
    let stream = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::post("/upload")
        .header("host", "bulk.example.com")
        .header("content-length", total.to_string())
        .body(body)
        .expect("request");
    let resp = tokio::time::timeout(WAIT * 12, sender.send_request(req))
        .await
        .expect("upload in time")
        .expect("upload response");
    assert_eq!(resp.status(), 200);
    let echo: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_eq!(echo["body_bytes"], total);
    assert_eq!(echo["body_fnv64"], format!("{:016x}", expected.finish()));
    let after_upload = gw.proc_status_kib("VmHWM").expect("hwm");

    // Download: counted and hashed frame by frame.
    let stream = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("/download?bytes={total}"))
        .header("host", "bulk.example.com")
        .body(http_body_util::Empty::new())
        .expect("request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0u64;
    let mut hash = Fnv64::new();
    let deadline = tokio::time::Instant::now() + WAIT * 12;
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .expect("download in time")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            got += data.len() as u64;
            hash.update(&data);
        }
    }
    assert_eq!(got, total);
    assert_eq!(hash.finish(), pattern_fnv64(total));
    let peak = gw.proc_status_kib("VmHWM").expect("hwm");
    println!(
        "streamed {} MiB each way: gateway RSS baseline {baseline} KiB, peak after upload {after_upload} KiB, peak after download {peak} KiB",
        total >> 20
    );
    assert!(
        peak < MAX_GATEWAY_HWM_KIB,
        "gateway peak RSS {peak} KiB while streaming {total} bytes"
    );
}
