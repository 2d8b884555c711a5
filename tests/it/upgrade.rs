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
