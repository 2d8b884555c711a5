//! The request handler: fault behaviours first, then the endpoints (echo, download, status,
//! delay, WebSocket echo, health probe).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::pattern::{Fnv64, PatternBody};
use crate::server::ConnCtx;
use crate::state::Shared;
use crate::{Behavior, Recorded};

/// Body type of every mock response.
pub(crate) type ResBody = BoxBody<Bytes, Infallible>;

const X_MOCK_ACCOUNT: HeaderName = HeaderName::from_static("x-mock-account");
const X_MOCK_REGION: HeaderName = HeaderName::from_static("x-mock-region");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const WS_PATH: &str = "/ws";
const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// Serves one request. Never fails: every problem becomes a response (or, for the fault
/// behaviours, deliberately no response at all).
pub(crate) async fn handle(
    shared: Arc<Shared>,
    ctx: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let probe = shared.is_probe(&path);
    shared.count(probe);
    let behavior = shared.behavior();
    let mut record = head_of(&req);

    match behavior {
        Behavior::Reset => {
            if !probe {
                shared.record(record);
            }
            ctx.reset();
            ctx.closed().await;
            return Ok(abandoned());
        }
        Behavior::BlackHole => {
            drain(req.into_body(), &mut record).await;
            if !probe {
                shared.record(record);
            }
            ctx.closed().await;
            return Ok(abandoned());
        }
        Behavior::Normal | Behavior::Status(_) | Behavior::Delay(_) => {}
    }

    // Taken before the body is consumed; only a handshake we will accept gets one.
    let upgrade =
        (!probe && path == WS_PATH && wants_websocket(&req)).then(|| hyper::upgrade::on(&mut req));
    drain(req.into_body(), &mut record).await;
    if !probe {
        shared.record(record.clone());
    }
    if let Behavior::Delay(delay) = behavior {
        tokio::time::sleep(delay).await;
    }

    let mut response = if probe {
        probe_response(shared.healthy())
    } else if let Behavior::Status(code) = behavior {
        // A 1xx is not a final response (hyper would not send it as one).
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| !s.is_informational())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        echo(&shared, &record, &path, query.as_deref(), status)
    } else {
        route(&shared, &ctx, &record, &path, query.as_deref(), upgrade).await
    };
    let headers = response.headers_mut();
    headers.insert(X_MOCK_ACCOUNT, shared.account_header.clone());
    headers.insert(X_MOCK_REGION, shared.region_header.clone());
    Ok(response)
}

/// The endpoints proper, for a request no behaviour has intercepted.
async fn route(
    shared: &Shared,
    ctx: &ConnCtx,
    record: &Recorded,
    path: &str,
    query: Option<&str>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResBody> {
    if path == WS_PATH {
        return match upgrade {
            Some(upgrade) => websocket(ctx, record, upgrade),
            None => text(
                StatusCode::UPGRADE_REQUIRED,
                "a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Version: 13) is required\n",
            ),
        };
    }
    if path == "/download" {
        return match query_param(query, "bytes").and_then(|n| n.parse::<u64>().ok()) {
            Some(len) => {
                let mut body = PatternBody::new(shared.pattern.clone(), len);
                if let Some(at) = query_param(query, "stall_after").and_then(|n| n.parse().ok()) {
                    body = body.stalling_at(at);
                }
                if query_param(query, "chunked").is_some() {
                    body = body.chunked();
                }
                let mut response = Response::new(body.boxed());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                response
            }
            None => text(StatusCode::BAD_REQUEST, "expected /download?bytes=N\n"),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status) if !status.is_informational() => echo(shared, record, path, query, status),
            _ => text(
                StatusCode::BAD_REQUEST,
                "expected /status/CODE with CODE in 200..=999\n",
            ),
        };
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        return match ms.parse::<u64>() {
            Ok(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                echo(shared, record, path, query, StatusCode::OK)
            }
            Err(_) => text(StatusCode::BAD_REQUEST, "expected /delay/MILLISECONDS\n"),
        };
    }
    echo(shared, record, path, query, StatusCode::OK)
}

/// The request head as recorded: everything but the body fields, which `drain` fills in.
fn head_of<B>(req: &Request<B>) -> Recorded {
    let uri = req.uri();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| header_str(req.headers(), header::HOST));
    Recorded {
        method: req.method().as_str().to_owned(),
        uri: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        version: format!("{:?}", req.version()),
        authority,
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body_len: 0,
        body_fnv64: Fnv64::new().finish(),
    }
}

/// Reads the body to its end (or its first error) chunk by chunk, counting and hashing as it goes.
async fn drain(mut body: Incoming, record: &mut Recorded) {
    let mut hasher = Fnv64::new();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            len += data.len() as u64;
        }
    }
    record.body_len = len;
    record.body_fnv64 = hasher.finish();
}

/// The 200 / `status` JSON echo of the request.
fn echo(
    shared: &Shared,
    record: &Recorded,
    path: &str,
    query: Option<&str>,
    status: StatusCode,
) -> Response<ResBody> {
    let mut headers = Map::new();
    for (name, value) in &record.headers {
        match headers.get_mut(name) {
            None => {
                headers.insert(name.clone(), Value::from(value.as_str()));
            }
            Some(Value::Array(values)) => values.push(Value::from(value.as_str())),
            Some(first) => {
                let first = first.take();
                headers.insert(name.clone(), json!([first, value]));
            }
        }
    }
    let body = json!({
        "account": shared.name,
        "region": shared.region,
        "method": record.method,
        "path": path,
        "query": query,
        "version": record.version,
        "authority": record.authority,
        "headers": headers,
        "body_bytes": record.body_len,
        "body_fnv64": format!("{:016x}", record.body_fnv64),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

fn probe_response(healthy: bool) -> Response<ResBody> {
    if healthy {
        text(StatusCode::OK, "ok")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ResBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, TEXT);
    response
}

/// What a black-holed or reset request "answers" once its connection is gone; nobody reads it.
fn abandoned() -> Response<ResBody> {
    text(StatusCode::SERVICE_UNAVAILABLE, "")
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Value of `key` in an `a=1&b=2` query (no percent-decoding; the mock's own parameters are plain).
fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// Whether `req` is a WebSocket opening handshake we accept (RFC 6455 section 4.2.1).
fn wants_websocket<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    let has_token = |name: HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.method() == http::Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Answers the handshake with 101 and starts an echo session on the upgraded connection.
fn websocket(
    ctx: &ConnCtx,
    record: &Recorded,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Response<ResBody> {
    let key = record
        .header(header::SEC_WEBSOCKET_KEY.as_str())
        .unwrap_or_default();
    let accept = derive_accept_key(key.as_bytes());
    ctx.tasks.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                echo_messages(ws).await;
            }
            Err(error) => tracing::debug!(%error, "mock websocket upgrade failed"),
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::try_from(accept)
        .expect("derive_accept_key returns base64, which is a valid header value");
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Sends every text and binary message back; control frames are handled by tungstenite.
async fn echo_messages<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = ws.next().await {
        match message {
            Ok(message) if message.is_text() || message.is_binary() => {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}
