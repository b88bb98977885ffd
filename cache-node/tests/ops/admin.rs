use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

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
