//! The HTTP server defends itself against clients that hold resources: half-open
//! connections, a body that never arrives, a huge declared length, too many connections, a
//! malformed chunked body. Through a real `stepwise serve` process and raw sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::serve_util::Server;

/// Small limits, so each defence shows within a test's patience.
const CONFIG: &str = r#"
[http]
header_timeout = "500ms"
request_timeout = "1s"
max_connections = 8
"#;

/// Generous bound on how long after its timeout the server may take to act: these tests
/// check that resources are released, not how promptly to the millisecond.
const SLACK: Duration = Duration::from_secs(10);

fn addr(server: &Server) -> String {
    server.url().trim_start_matches("http://").to_owned()
}

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(addr(server)).expect("connect");
    stream.set_read_timeout(Some(SLACK)).unwrap();
    stream
}

/// Reads until the server closes the connection (or `SLACK` passes); returns what it sent.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open past {SLACK:?}: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request on its own connection; the whole answer.
fn exchange(server: &Server, request: &[u8]) -> String {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_to_close(&mut stream)
}

#[test]
fn the_server_releases_what_slow_or_hostile_clients_hold() {
    let server = Server::start_with_config(CONFIG);

    // A connection that never sends a request is closed after the header timeout.
    let started = Instant::now();
    let mut silent = connect(&server);
    assert_eq!(read_to_close(&mut silent), "");
    assert!(started.elapsed() < SLACK);

    // So is a keep-alive connection left idle after an answer.
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_to_close(&mut idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let token = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(server.api().admin_create_tenant("acme"))
    };

    // A declared petabyte is refused at once, before any of it is read.
    let answer = exchange(
        &server,
        format!(
            "PUT /v1/queues/q HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: 1125899906842624\r\n\
             connection: close\r\n\r\n{{\"a\": 1234}}"
        )
        .as_bytes(),
    );
    assert!(
        answer.starts_with("HTTP/1.1 413") && answer.contains("payload_too_large"),
        "{answer}"
    );

    // A body that stops arriving: 408 in the API's shape once the request timeout passes.
    let mut stalled = connect(&server);
    write!(
        stalled,
        "PUT /v1/queues/q HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"concurrency\""
    )
    .unwrap();
    let answer = read_to_close(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");

    // A malformed chunked body is a bad request, not "too large".
    let answer = exchange(
        &server,
        format!(
            "PUT /v1/queues/q HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("invalid_json"),
        "{answer}"
    );

    // Twice the connection limit held open by clients that send nothing: they are closed
    // after the header timeout, and a real client is served meanwhile or right after.
    let hogs: Vec<TcpStream> = (0..16).map(|_| connect(&server)).collect();
    let started = Instant::now();
    let answer = exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < SLACK);
    for mut hog in hogs {
        assert_eq!(read_to_close(&mut hog), "");
    }
    assert!(
        !server.log().contains("panicked"),
        "the server log shows a panic:\n{}",
        server.log()
    );
}
