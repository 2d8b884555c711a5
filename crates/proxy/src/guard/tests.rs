//! The guard passes clean framing through byte for byte and poisons ambiguous heads.

use proptest::prelude::*;

use super::*;

/// Runs `input` through a guard fed in pieces of `split` bytes; returns what hyper would read.
fn run(input: &[u8], split: usize) -> Vec<u8> {
    let mut g = FramingGuard::new((), 64 * 1024);
    for piece in input.chunks(split.max(1)) {
        g.feed(piece);
    }
    g.out.into_iter().collect()
}

fn check(input: &[u8], expect_pass: bool) {
    for split in [1, 2, 3, 7, 64, input.len()] {
        let out = run(input, split);
        if expect_pass {
            assert_eq!(
                out,
                input,
                "split {split}: {}",
                String::from_utf8_lossy(input)
            );
        } else {
            assert!(
                out.windows(POISON.len()).any(|w| w == POISON),
                "split {split}: expected a rejection of {}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn clean_framing_passes_unchanged() {
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n",
        // a body that looks like a head with conflicting framing is just body
        b"POST / HTTP/1.1\r\nContent-Length: 60\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        // HTTP/2 prior knowledge and upgrades are left alone
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello\r\n\r\n",
    ];
    for case in cases {
        check(case, true);
    }
}

#[test]
fn ambiguous_framing_is_rejected() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent_length: 5\r\n\r\nhello",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n",
        // smuggled second request behind a clean first one
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for case in cases {
        check(case, false);
    }
}

#[test]
fn nothing_after_a_rejection_is_released() {
    let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n";
    let out = run(input, input.len());
    assert_eq!(out, POISON);
}

#[test]
fn oversized_heads_are_left_to_hyper() {
    let mut input = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let mut g = FramingGuard::new((), 64 * 1024);
    g.feed(&input);
    assert_eq!(g.out.len(), input.len(), "released for hyper to answer 431");
    assert_eq!(g.state, State::Passthrough);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of cleanly framed requests, cut anywhere, comes out byte for byte.
    #[test]
    fn clean_sequences_survive_any_split(
        bodies in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)), 1..5),
        split in 1usize..50,
    ) {
        let mut input = Vec::new();
        for (chunked, body) in &bodies {
            if *chunked {
                input.extend_from_slice(b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(7) {
                    input.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    input.extend_from_slice(piece);
                    input.extend_from_slice(b"\r\n");
                }
                input.extend_from_slice(b"0\r\n\r\n");
            } else {
                input.extend_from_slice(format!("POST /l HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
                input.extend_from_slice(body);
            }
        }
        prop_assert_eq!(run(&input, split), input);
    }
}

/// A client that starts a head and stalls gets 408 at the deadline; the connection ends.
#[tokio::test(start_paused = true)]
async fn partial_head_times_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(4096);
    let mut guard = FramingGuard::new(server, 64 * 1024).with_head_timeout(Duration::from_secs(10));
    let (mut client_read, mut client_write) = tokio::io::split(client);
    client_write
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let started = tokio::time::Instant::now();
    let err = guard.read(&mut buf).await.expect_err("times out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let mut answer = vec![0u8; REQUEST_TIMEOUT.len()];
    client_read.read_exact(&mut answer).await.expect("408 sent");
    assert_eq!(answer, REQUEST_TIMEOUT);
}

/// An idle keep-alive connection is closed at the deadline without a response; a head that
/// completes in time disarms it.
#[tokio::test(start_paused = true)]
async fn idle_connection_closes_silently_and_complete_heads_pass() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(4096);
    let mut guard = FramingGuard::new(server, 64 * 1024).with_head_timeout(Duration::from_secs(10));
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = guard.read(&mut buf).await.expect("head passes");
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    tokio::time::sleep(Duration::from_secs(9)).await;
    let err = guard.read(&mut buf).await.expect_err("idle times out");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(10), client.read_to_end(&mut rest)).await;
    assert!(
        rest.is_empty(),
        "no response on an idle connection: {rest:?}"
    );
}

/// Regression: a keep-alive connection whose requests each arrive in time is never cut, however
/// old the connection gets (the deadline restarts with every head, bodies or not). The guard is
/// already waiting when each request comes, as it is under hyper.
#[tokio::test(start_paused = true)]
async fn keep_alive_connections_are_not_cut_by_age() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(4096);
    let mut guard = FramingGuard::new(server, 64 * 1024).with_head_timeout(Duration::from_secs(10));
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        let send = async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client
                .write_all(b"GET / HTTP/1.1\r\n\r\n")
                .await
                .expect("write");
        };
        let (read, ()) = tokio::join!(guard.read(&mut buf), send);
        let n = read.expect("each head arrives within its own deadline");
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    }
}
