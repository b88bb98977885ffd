use std::net::UdpSocket;
use std::time::Duration;

use crate::common::*;

const HEADER: usize = 8;

/// A UDP client speaking memcached's framing.
struct UdpClient {
    socket: UdpSocket,
}

impl UdpClient {
    fn connect(port: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(("127.0.0.1", port)).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        Self { socket }
    }

    fn send(&self, id: u16, seq: u16, total: u16, payload: &[u8]) {
        let mut d: Vec<u8> = [id, seq, total, 0].iter().flat_map(|f| f.to_be_bytes()).collect();
        d.extend_from_slice(payload);
        self.socket.send(&d).unwrap();
    }

    /// Receives one datagram: (id, seq, total, reserved) and payload.
    fn recv(&self) -> ([u16; 4], Vec<u8>) {
        let mut buf = vec![0; 65536];
        let n = self.socket.recv(&mut buf).unwrap();
        assert!(n >= HEADER, "short datagram");
        let field = |i: usize| u16::from_be_bytes([buf[2 * i], buf[2 * i + 1]]);
        ([field(0), field(1), field(2), field(3)], buf[HEADER..n].to_vec())
    }

    /// Sends a single-datagram request and reassembles the reply, checking the framing.
    fn call(&self, id: u16, request: &[u8]) -> Vec<u8> {
        self.send(id, 0, 1, request);
        let mut parts: Vec<Option<Vec<u8>>> = Vec::new();
        loop {
            let ([rid, seq, total, reserved], payload) = self.recv();
            assert_eq!((rid, reserved), (id, 0));
            assert!(HEADER + payload.len() <= 1400, "datagram of {} bytes", HEADER + payload.len());
            if parts.is_empty() {
                parts.resize(total as usize, None);
            }
            assert_eq!(parts.len(), total as usize, "every datagram carries the same count");
            assert!(parts[seq as usize].replace(payload).is_none(), "sequence {seq} twice");
            if parts.iter().all(Option::is_some) {
                return parts.into_iter().flatten().flatten().collect();
            }
        }
    }
}

#[test]
fn udp_speaks_the_text_protocol_with_memcached_framing() {
    let udp_port = free_udp_port();
    let node = Node::start("udp", &["-U", &udp_port.to_string()]);
    let client = UdpClient::connect(udp_port);

    assert_eq!(client.call(0x4242, b"set k 0 0 5\r\nhello\r\n"), b"STORED\r\n");
    assert_eq!(client.call(7, b"get k\r\n"), b"VALUE k 0 5\r\nhello\r\nEND\r\n");

    // A reply of several datagrams, reassembled in sequence order.
    let value: String = (0..5000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let set = format!("set big 3 0 {}\r\n{value}\r\n", value.len());
    assert_eq!(client.call(8, set.as_bytes()), b"STORED\r\n");
    let reply = client.call(9, b"get big\r\n");
    assert_eq!(String::from_utf8(reply).unwrap(), format!("VALUE big 3 {}\r\n{value}\r\nEND\r\n", value.len()));

    // The same item over TCP: one store behind both transports.
    let mut tcp = node.client();
    assert_eq!(tcp.call_until_end("get k\r\n"), "VALUE k 0 5\r\nhello\r\nEND\r\n");
    let settings = tcp.stats("settings");
    assert!(settings.contains(&("udpport".into(), udp_port.to_string())));
}

#[test]
fn udp_ignores_multi_datagram_requests_and_noreply_answers_nothing() {
    let udp_port = free_udp_port();
    let _node = Node::start("udp-multi", &["-U", &udp_port.to_string()]);
    let client = UdpClient::connect(udp_port);

    client.send(1, 0, 2, b"get k\r\n");
    client.send(2, 0, 1, b"set k 0 0 1 noreply\r\nx\r\n");
    assert_eq!(client.call(3, b"get k\r\n"), b"VALUE k 0 1\r\nx\r\nEND\r\n", "nothing came for 1 or 2");

    // And nothing more is on the way.
    client.socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(client.socket.recv(&mut [0; 64]).is_err());
}

#[test]
fn udp_is_off_by_default() {
    let node = Node::start("udp-off", &[]);
    let settings = node.client().stats("settings");
    assert!(settings.contains(&("udpport".into(), "0".into())));
}
