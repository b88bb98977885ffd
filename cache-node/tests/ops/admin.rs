use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use cache_node::server::http::{HEADER_READ_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS};

use crate::common::*;

struct HttpResponse {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.0 GET: the server closes the connection after the response.
fn get(port: u16, path: &str) -> Option<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    Some(HttpResponse { status, headers: headers.to_ascii_lowercase(), body: body.to_string() })
}

/// Sample lines of the text format: `name{labels}` -> value.
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn admin_listener_serves_metrics_and_health() {
    let admin_port = free_port();
    let node = Node::start("admin", &["--admin-listen", &format!("127.0.0.1:{admin_port}"), "-c", "100"]);
    let health = wait_for("the admin listener", || get(admin_port, "/healthz"));
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = get(admin_port, "/readyz").unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    // memcached's command line: replication is off, so no replication port is open.
    let role = get(admin_port, "/role").unwrap();
    assert_eq!((role.status, role.body.as_str()), (200, "standalone\n"));
    assert_eq!(get(admin_port, "/nowhere").unwrap().status, 404);

    let mut c = node.client();
    for (request, reply) in [
        ("set a 0 0 1\r\n1\r\n", "STORED\r\n"),
        ("set b 0 0 1\r\nx\r\n", "STORED\r\n"),
        ("cas a 0 0 1 999999\r\n2\r\n", "EXISTS\r\n"),
        ("incr a 5\r\n", "6\r\n"),
        ("decr nope 1\r\n", "NOT_FOUND\r\n"),
        ("delete nope\r\n", "NOT_FOUND\r\n"),
        ("touch b 100\r\n", "TOUCHED\r\n"),
    ] {
        assert_eq!(c.call(request), reply, "{request}");
    }
    assert_eq!(c.call_until_end("get a b nope\r\n"), "VALUE a 0 1\r\n6\r\nVALUE b 0 1\r\nx\r\nEND\r\n");
    let stats: HashMap<String, String> = c.stats("").into_iter().collect();

    let metrics = get(admin_port, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers.contains("content-type: text/plain; version=0.0.4"), "{}", metrics.headers);
    let m = samples(&metrics.body);
    let value = |name: &str| *m.get(name).unwrap_or_else(|| panic!("no {name} in\n{}", metrics.body));
    let stat = |name: &str| stats[name].parse::<f64>().unwrap();

    assert_eq!(value("memcached_up"), 1.0);
    assert_eq!(value(&format!("memcached_version{{version=\"{}\"}}", stats["version"])), 1.0);
    assert_eq!(value("memcached_current_items"), 2.0);
    assert_eq!(value("memcached_items_total"), stat("total_items"));
    assert_eq!(value("memcached_items_evicted_total"), 0.0);
    assert_eq!(value("memcached_items_reclaimed_total"), 0.0);
    for (command, status, expected) in [
        ("get", "hit", 2.0),
        ("get", "miss", 1.0),
        ("set", "hit", 2.0),
        ("cas", "badval", 1.0),
        ("cas", "hit", 0.0),
        ("incr", "hit", 1.0),
        ("decr", "miss", 1.0),
        ("delete", "miss", 1.0),
        ("touch", "hit", 1.0),
        ("flush", "hit", 0.0),
    ] {
        let name = format!("memcached_commands_total{{command=\"{command}\",status=\"{status}\"}}");
        assert_eq!(value(&name), expected, "{name}");
    }
    assert_eq!(value("memcached_current_connections"), stat("curr_connections"));
    assert!(value("memcached_connections_total") >= 1.0);
    assert_eq!(value("memcached_max_connections"), 100.0);
    assert_eq!(value("memcached_connections_rejected_total"), 0.0);
    // Traffic only grows the byte counters; this connection has been quiet since `stats`.
    assert_eq!(value("memcached_read_bytes_total"), stat("bytes_read"));
    assert!(value("memcached_written_bytes_total") >= stat("bytes_written"));
    assert_eq!(value("memcached_limit_bytes"), stat("limit_maxbytes"));
    assert_eq!(value("memcached_current_bytes"), stat("bytes"));
    assert!(value("memcached_uptime_seconds") >= 0.0);
    assert!(value("memcached_process_user_cpu_seconds_total") >= 0.0);
    assert!(value("memcached_process_system_cpu_seconds_total") >= 0.0);
}

/// Sends a keep-alive `GET /healthz` and reads the status line of the answer: `None` if the
/// node closed the connection instead. Neither within `WAIT` is a failure.
fn keep_alive_health(stream: &mut TcpStream) -> Option<String> {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reader = BufReader::new(&*stream);
    let mut status = String::new();
    match reader.read_line(&mut status) {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("neither answered nor closed: {e}"),
    }
    // The rest of the answer, so that the next one starts with its status line.
    let mut line = String::new();
    let mut length = 0;
    while reader.read_line(&mut line).ok()? > 2 {
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        line.clear();
    }
    reader.read_exact(&mut vec![0; length]).ok()?;
    Some(status)
}

/// Issue 12: idle admin connections took every descriptor under a low open-files limit, and
/// the client port stopped accepting (EMFILE).
#[test]
fn admin_connections_are_capped_and_leave_descriptors_to_clients() {
    let admin_port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    // -c 100 and the rest fit in 256 descriptors: the node keeps that limit, even run as root.
    let args = ["--admin-listen", &admin.to_string(), "-c", "100"];
    let node = Node::start_with("admin-cap", &args, |c| limit_open_files(c, 256, 256));
    assert_eq!(open_files_limits(node.child.id()), (256, 256));
    wait_for("the admin listener", || get(admin_port, "/healthz"));

    // Each asks at once and keeps the connection open, as a scraper with keep-alive would. The
    // node serves the first MAX_CONNECTIONS it accepts and closes the others.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        let mut stream = TcpStream::connect_timeout(&admin, WAIT).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        match keep_alive_health(&mut stream) {
            Some(status) => {
                assert_eq!(status, "HTTP/1.1 200 OK\r\n");
                open.push(stream);
            }
            None => refused += 1,
        }
    }
    assert_eq!((open.len(), refused), (MAX_CONNECTIONS, 300 - MAX_CONNECTIONS));

    // All still held (each answers again), so one more is turned away...
    for stream in &mut open {
        assert_eq!(keep_alive_health(stream).as_deref(), Some("HTTP/1.1 200 OK\r\n"));
    }
    assert!(get(admin_port, "/healthz").is_none(), "a connection past the cap was served");
    // ...while the client port, with descriptors left, serves.
    let mut client = node.client();
    assert!(client.call("version\r\n").starts_with("VERSION "));
    assert_eq!(client.call("set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    assert_eq!(client.call_until_end("get k\r\n"), "VALUE k 0 1\r\nv\r\nEND\r\n");

    drop(open);
    let health = wait_for("the admin listener to serve again", || get(admin_port, "/healthz"));
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
}

/// A client that never finishes its request header is disconnected once the header timeout
/// passes, rather than holding a connection for good.
#[test]
fn a_partial_request_header_is_dropped_after_the_header_timeout() {
    let admin_port = free_port();
    let _node = Node::start("admin-partial", &["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
    wait_for("the admin listener", || get(admin_port, "/healthz"));

    let mut stream = TcpStream::connect(("127.0.0.1", admin_port)).unwrap();
    stream.set_read_timeout(Some(HEADER_READ_TIMEOUT + WAIT)).unwrap();
    let sent = Instant::now();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let waited = sent.elapsed();
    assert!(
        read.is_ok() || read.as_ref().is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
        "the connection stayed open for {waited:?}: {read:?}"
    );
    assert!(answer.is_empty(), "answered {:?}", String::from_utf8_lossy(&answer));
    // The timer starts when the node accepts, about when the request was sent.
    assert!(
        waited > HEADER_READ_TIMEOUT - Duration::from_secs(1) && waited < HEADER_READ_TIMEOUT + Duration::from_secs(3),
        "closed after {waited:?}, the header timeout is {HEADER_READ_TIMEOUT:?}"
    );
}

/// No endpoint takes a body: a large one is refused before any handler runs (here the
/// switchover, which a standalone node would otherwise answer with 409).
#[test]
fn a_request_body_over_the_limit_is_refused() {
    let admin_port = free_port();
    let _node = Node::start("admin-body", &["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
    wait_for("the admin listener", || get(admin_port, "/healthz"));

    let mut stream = TcpStream::connect(("127.0.0.1", admin_port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let length = MAX_BODY_BYTES + 1;
    let head = format!("POST /switchover HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut status = String::new();
    BufReader::new(&stream).read_line(&mut status).unwrap();
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large\r\n");
}

/// One HTTP/1.0 POST /switchover with `headers` (whole lines): (status, body).
fn post_switchover(port: u16, headers: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!("POST /switchover HTTP/1.0\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string())
}

/// Issue 11: /switchover takes the token of --admin-token-file, read at each request; a
/// standalone node then answers 409 ("replication is off"), which shows the request got past
/// the check. Refusals are counted.
#[test]
fn switchover_takes_the_admin_token_and_a_rotated_one_at_once() {
    let dir = TempDir::new("admin-token-files");
    let token = dir.0.join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let (admin_port, read_port) = (free_port(), free_port());
    let args = [
        "--admin-listen",
        &format!("127.0.0.1:{admin_port}"),
        "--admin-read-listen",
        &format!("127.0.0.1:{read_port}"),
        "--admin-token-file",
        token.to_str().unwrap(),
    ];
    let _node = Node::start("admin-token", &args);
    wait_for("the admin listener", || get(admin_port, "/healthz"));

    assert_eq!(post_switchover(admin_port, "").0, 401, "no token");
    assert_eq!(post_switchover(admin_port, "Authorization: Bearer wrong\r\n").0, 403);
    assert_eq!(post_switchover(admin_port, "Authorization: Basic Zmlyc3QtdG9rZW4=\r\n").0, 401);
    let (status, body) = post_switchover(admin_port, "Authorization: Bearer first-token\r\n");
    assert_eq!((status, body.as_str()), (409, "replication is off\n"));

    std::fs::write(&token, "second-token").unwrap();
    assert_eq!(post_switchover(admin_port, "Authorization: Bearer first-token\r\n").0, 403);
    assert_eq!(post_switchover(admin_port, "Authorization: Bearer second-token\r\n").0, 409);

    // The read-only listener serves the probes and metrics, and no switchover at all.
    assert_eq!(get(read_port, "/healthz").unwrap().status, 200);
    assert_eq!(post_switchover(read_port, "Authorization: Bearer second-token\r\n").0, 404);
    let metrics = samples(&get(read_port, "/metrics").unwrap().body);
    assert_eq!(metrics["cachepair_admin_auth_errors_total"], 4.0);
}

#[test]
fn without_a_token_file_switchover_is_taken_from_loopback() {
    let admin_port = free_port();
    let _node = Node::start("admin-loopback", &["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
    wait_for("the admin listener", || get(admin_port, "/healthz"));
    assert_eq!(post_switchover(admin_port, "").0, 409);
}

#[test]
fn a_missing_or_empty_admin_token_file_fails_the_start() {
    let dir = TempDir::new("admin-token-bad");
    let empty = dir.0.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for (file, message) in [(empty.clone(), "is empty"), (dir.0.join("missing"), "cannot read the admin token file")] {
        let out = std::process::Command::new(BIN)
            .args(["--allow-root", "-p", "0", "--admin-token-file", file.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
}
