//! WebSocket (HTTP/1.1 Upgrade) through the gateway.

use futures_util::{SinkExt, StreamExt};
use pairgate_test_support::{TestGateway, WAIT};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{EAST_KEY, config, regions};

#[tokio::test]
async fn websocket_echo_passes_through() {
    let (east, west) = regions().await;
    let gw = TestGateway::start_with_env(&config(&east, &west, ""), &[("IT_EAST_KEY", EAST_KEY)])
        .await
        .expect("gateway starts");
    let stream = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let mut request = format!("ws://{}/ws", gw.addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("host", "tailspin.example.com".parse().expect("host"));
    let (mut ws, resp) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
            .await
            .expect("handshake in time")
            .expect("handshake");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.expect("send");
        let echoed = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("message");
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    let echoed = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("msg");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.expect("close");
    let seen = west.requests().pop().expect("west saw the upgrade");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
}

/// At SIGTERM an open WebSocket tunnel keeps working within `shutdown_grace`, and the process
/// waits for it: hyper hands an upgraded connection over, so only the gateway's own tracking of
/// tunnels keeps shutdown from cutting it. (Two workers: `wait_exit` blocks one while the mock
/// upstream, in this process, must still answer the close.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_open_tunnels_within_the_grace() {
    let west = crate::support::mock("west", "westus").await;
    let toml = format!(
        "[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshutdown_grace = \"10s\"\n{}",
        crate::support::pair_config(&[("west", "westus", &west)], &[("t", "west", None)], "")
    );
    let mut gw = pairgate_test_support::GatewayProcess::spawn(
        &crate::support::temp_path("tunnel.toml"),
        &toml,
        &[],
    )
    .expect("gateway process");
    let stream = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let mut request = format!("ws://{}/ws", gw.addr())
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("host", "t.example.com".parse().expect("host"));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let echo = async |ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
                      text: &str| {
        ws.send(Message::text(text.to_owned())).await.expect("send");
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("message")
    };
    assert_eq!(echo(&mut ws, "before").await, Message::text("before"));

    gw.signal("TERM").expect("SIGTERM");
    // Shutdown has begun once the listener refuses new connections.
    let deadline = std::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(gw.addr()).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(echo(&mut ws, "during").await, Message::text("during"));
    assert!(
        gw.wait_exit(std::time::Duration::from_millis(300)).is_err(),
        "the process exited with a tunnel open"
    );
    ws.close(None).await.expect("close");
    drop(ws);
    let exit = gw
        .wait_exit(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| {
            panic!(
                "{e}: should exit once the tunnel closed; log:\n{}",
                gw.stderr()
            )
        });
    assert_eq!(exit, Some(0), "{}", gw.stderr());
}
