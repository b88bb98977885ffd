use std::collections::BTreeMap;

use crate::common::*;

/// `stats conns` grouped by connection id: id -> (field -> value).
fn conns(client: &mut Client) -> BTreeMap<u32, BTreeMap<String, String>> {
    let mut by_id: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for (key, value) in client.stats("conns") {
        let (id, field) = key.split_once(':').unwrap();
        by_id.entry(id.parse().unwrap()).or_default().insert(field.to_string(), value);
    }
    by_id
}

fn find<'a>(conns: &'a BTreeMap<u32, BTreeMap<String, String>>, addr: &str) -> &'a BTreeMap<String, String> {
    conns.values().find(|c| c["addr"] == addr).unwrap_or_else(|| panic!("no {addr} in {conns:?}"))
}

#[test]
fn stats_conns_lists_listeners_and_clients_as_memcached_does() {
    let udp_port = free_udp_port();
    let node = Node::start("conns", &["-U", &udp_port.to_string()]);
    let mut idle = node.client();
    assert!(idle.call("version\r\n").starts_with("VERSION"));
    let mut asking = node.client();
    let listen = format!("tcp:127.0.0.1:{}", node.port);

    let idle_addr = format!("tcp:{}", idle.local_addr());
    // The idle connection turns to waiting just after its reply has gone out.
    let all = wait_for("the idle connection to wait", || {
        let all = conns(&mut asking);
        (find(&all, &idle_addr)["state"] == "conn_waiting").then_some(all)
    });
    let listener = find(&all, &listen);
    assert_eq!(listener["state"], "conn_listening");
    assert!(!listener.contains_key("listen_addr"));

    let udp = find(&all, &format!("udp:127.0.0.1:{udp_port}"));
    assert_eq!((udp["UDP"].as_str(), udp["state"].as_str()), ("UDP", "conn_read"));

    let me = find(&all, &format!("tcp:{}", asking.local_addr()));
    assert_eq!((me["listen_addr"].as_str(), me["state"].as_str()), (listen.as_str(), "conn_parse_cmd"));
    assert_eq!(me["secs_since_last_cmd"], "0");

    let other = find(&all, &idle_addr);
    assert_eq!(other["listen_addr"], listen);
    let secs: u32 = other["secs_since_last_cmd"].parse().unwrap();
    assert!(secs < 60);

    // A closed connection leaves the list.
    drop(idle);
    wait_for("the closed connection to leave", || {
        conns(&mut asking).values().all(|c| c["addr"] != idle_addr).then_some(())
    });
}
