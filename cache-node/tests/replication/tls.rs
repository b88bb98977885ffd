//! Mutual TLS on the link (`--repl-tls-*`) and the rotation of the pair's credentials while it
//! runs: certificates made here with rcgen, a per-pair CA as the operator issues them.

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use super::*;

/// What both members' certificates name (`--repl-tls-name`'s default).
const NAME: &str = "cachepair-replication";

/// PEM text of a DER item.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|l| std::str::from_utf8(l).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A certificate authority of its own.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Self { pem: pem("CERTIFICATE", cert.der()), issuer: Issuer::new(params, key) }
    }

    /// A member's certificate and key: one for both ends of a link.
    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![NAME.to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: pem("CERTIFICATE", cert.der()), key: pem("PRIVATE KEY", &key.serialize_der()) }
    }
}

struct Leaf {
    cert: String,
    key: String,
}

/// Replaces a file whole, as a Kubernetes Secret volume does (a rename): a node never reads
/// half of it.
fn replace(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A node's certificate files, in a directory of their own.
struct Certs(TempDir);

impl Certs {
    fn new(tag: &str, ca: &Ca, leaf: &Leaf) -> Self {
        let certs = Self(TempDir::new(&format!("certs-{tag}")));
        certs.write(ca, leaf);
        certs
    }

    fn write(&self, ca: &Ca, leaf: &Leaf) {
        replace(&self.0.0.join("ca.pem"), &ca.pem);
        replace(&self.0.0.join("key.pem"), &leaf.key);
        replace(&self.0.0.join("cert.pem"), &leaf.cert);
    }

    fn args(&self) -> Vec<String> {
        let path = |name: &str| self.0.0.join(name).to_str().unwrap().to_string();
        ["--repl-tls-cert", &path("cert.pem"), "--repl-tls-key", &path("key.pem"), "--repl-tls-ca", &path("ca.pem")]
            .map(String::from)
            .to_vec()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A stranger to the pair, pointed at `peer`: it serves clients at once, so that it can be
/// watched while it tries, and logs why it fails.
fn joiner(tag: &str, peer: u16, args: &[String]) -> Member {
    let mut args = strs(args);
    args.extend(["--serve-while-syncing", "-v"]);
    member(tag, free_port(), peer, &args)
}

/// Two members, each with its own arguments, as (master, slave) once linked.
fn pair_with(tags: [&str; 2], args_a: &[String], args_b: &[String]) -> (Member, Member) {
    let (pa, pb) = (free_port(), free_port());
    let a = member(tags[0], pa, pb, &strs(args_a));
    wait_role(&a.node, "master");
    let b = member(tags[1], pb, pa, &strs(args_b));
    wait_role(&b.node, "slave");
    wait_for("the link", || (repl_stat(&a.node, "link") == "up").then_some(()));
    (a, b)
}

/// Kills the slave and starts it again with `args`, as a new link needs; returns it once it is
/// linked as slave again, with a write made on the master meanwhile.
fn restart_slave(master: &Member, slave: Member, tag: &str, args: &[String]) -> Member {
    let Member { mut node, repl_port } = slave;
    node.signal(Signal::SIGKILL);
    node.wait_exit();
    drop(node);
    let key = format!("while-{tag}");
    assert_eq!(master.node.client().call(&format!("set {key} 0 0 1\r\nx\r\n")), "STORED\r\n");
    let slave = member(tag, repl_port, master.repl_port, &strs(args));
    wait_role(&slave.node, "slave");
    wait_item(&slave.node, &key, Option::is_some);
    slave
}

#[test]
fn a_pair_over_mutual_tls_replicates_and_fails_over() {
    let ca = Ca::new();
    let certs = Certs::new("tls-pair", &ca, &ca.leaf());
    let admin = free_port();
    let mut args_a = certs.args();
    args_a.extend(["--admin-listen".into(), format!("127.0.0.1:{admin}")]);
    let (mut a, b) = pair_with(["tls-a", "tls-b"], &args_a, &certs.args());
    assert_eq!((repl_stat(&a.node, "tls"), repl_stat(&b.node, "tls")), ("yes".into(), "yes".into()));
    assert!(http_get(admin, "/metrics").1.contains("cachepair_replication_tls 1"));
    assert_eq!(a.node.client().call("set before 0 0 3\r\nold\r\n"), "STORED\r\n");
    let before = wait_item(&b.node, "before", Option::is_some);

    a.node.signal(Signal::SIGKILL);
    a.node.wait_exit();
    let killed = Instant::now();
    wait_role(&b.node, "master");
    assert_eq!(b.node.client().call("set after 0 0 3\r\nnew\r\n"), "STORED\r\n");
    let takeover = killed.elapsed();
    assert!(takeover < Duration::from_secs(1), "takeover took {takeover:?}");

    let a2 = member("tls-a2", a.repl_port, b.repl_port, &strs(&certs.args()));
    wait_role(&a2.node, "slave");
    assert_eq!(wait_item(&a2.node, "before", Option::is_some), before, "CAS survives failover");
    wait_item(&a2.node, "after", |v| v.as_ref().is_some_and(|v| v.1 == "new"));
}

#[test]
fn a_tls_node_refuses_plaintext_foreign_certificates_and_garbage_and_keeps_its_link() {
    let ca = Ca::new();
    let certs = Certs::new("tls-refuse", &ca, &ca.leaf());
    let (a, b) = pair_with(["refuse-a", "refuse-b"], &certs.args(), &certs.args());
    let failed = |n: &Node| stat_num(n, "handshakes_failed");
    let mut before = failed(&a.node);
    let mut refused = |what: &str| {
        wait_for(what, || (failed(&a.node) > before).then_some(()));
        before = failed(&a.node);
    };

    // Without TLS: told so in its own protocol, it takes the master for alive and waits.
    let plain = joiner("refuse-plain", a.repl_port, &[]);
    refused("the plaintext peer's refusal");
    wait_for("the plaintext peer to hear why", || plain.node.stderr().contains("speaks TLS").then_some(()));

    // The pair's CA, but its own certificate from another: the master refuses it.
    let other = Ca::new();
    let foreign_leaf = Certs::new("tls-foreign-leaf", &other, &other.leaf());
    replace(&foreign_leaf.0.0.join("ca.pem"), &ca.pem);
    let foreign = joiner("refuse-leaf", a.repl_port, &foreign_leaf.args());
    refused("the foreign certificate's refusal");
    wait_for("an auth failure", || (stat_num(&a.node, "auth_failures") >= 1).then_some(()));

    // Another CA altogether: it refuses the master's certificate, and the master counts it.
    let stranger_certs = Certs::new("tls-stranger", &other, &other.leaf());
    let stranger = joiner("refuse-ca", a.repl_port, &stranger_certs.args());
    refused("the stranger's handshake");
    wait_for("the stranger's auth failure", || (stat_num(&stranger.node, "auth_failures") >= 1).then_some(()));

    for garbage in [&b"GET / HTTP/1.0\r\n\r\n"[..], &[0x16; 64], &[0, 0, 0, 5, 2, 1, 2, 3, 4]] {
        let mut s = TcpStream::connect(("127.0.0.1", a.repl_port)).unwrap();
        s.set_read_timeout(Some(common::WAIT)).unwrap();
        let _ = s.write_all(garbage);
        let _ = s.read_to_end(&mut Vec::new());
        refused("the garbage's refusal");
    }

    // None of them became master beside the live one, and the pair never noticed.
    for n in [&plain, &foreign, &stranger] {
        assert_eq!(repl_stat(&n.node, "role"), "starting");
    }
    assert_eq!((repl_stat(&a.node, "role"), repl_stat(&a.node, "link")), ("master".into(), "up".into()));
    assert_eq!(repl_stat(&b.node, "role"), "slave");
    assert_eq!((stat_num(&a.node, "links_replaced"), stat_num(&b.node, "failovers")), (0, 0));
    assert_eq!(a.node.client().call("set after 0 0 1\r\nx\r\n"), "STORED\r\n");
    wait_item(&b.node, "after", Option::is_some);
}

#[test]
fn a_renewed_certificate_takes_effect_on_the_next_link_without_a_restart() {
    let ca = Ca::new();
    let (certs_a, certs_b) = (Certs::new("renew-a", &ca, &ca.leaf()), Certs::new("renew-b", &ca, &ca.leaf()));
    let mut args_a = certs_a.args();
    args_a.push("-v".into());
    let (a, b) = pair_with(["renew-a", "renew-b"], &args_a, &certs_b.args());

    // The master's certificate breaks: the next link fails, without harm to the master, and
    // the returning slave waits rather than take over.
    replace(&certs_a.0.0.join("cert.pem"), "not a certificate");
    let Member { mut node, repl_port } = b;
    node.signal(Signal::SIGKILL);
    node.wait_exit();
    drop(node);
    let before = stat_num(&a.node, "handshakes_failed");
    let mut args = certs_b.args();
    args.push("--serve-while-syncing".into());
    let b = member("renew-b2", repl_port, a.repl_port, &strs(&args));
    wait_for("a refused link", || (stat_num(&a.node, "handshakes_failed") > before).then_some(()));
    assert!(a.node.stderr().contains("Error loading the certificate chain"), "{}", a.node.stderr());
    assert_eq!((repl_stat(&a.node, "role"), repl_stat(&b.node, "role")), ("master".into(), "starting".into()));

    // A renewed certificate from the same CA: the slave's next try links, the master unrestarted.
    certs_a.write(&ca, &ca.leaf());
    assert_eq!(a.node.client().call("set renewed 0 0 1\r\nx\r\n"), "STORED\r\n");
    wait_role(&b.node, "slave");
    wait_item(&b.node, "renewed", Option::is_some);
    // And the slave's own renewal, on its next link.
    certs_b.write(&ca, &ca.leaf());
    restart_slave(&a, b, "renew-b3", &certs_b.args());
}

#[test]
fn the_shared_secret_rotates_while_the_pair_runs() {
    let dir = TempDir::new("rotate-secret");
    let (file_a, file_b) = (dir.0.join("a"), dir.0.join("b"));
    let (old, new) = ("the-old-shared-secret", "the-new-shared-secret");
    replace(&file_a, &format!("{old}\n"));
    replace(&file_b, &format!("{old}\n"));
    let args = |file: &std::path::Path| vec!["--repl-secret-file".to_string(), file.to_str().unwrap().to_string()];
    let (a, mut b) = pair_with(["rotate-a", "rotate-b"], &args(&file_a), &args(&file_b));

    // Each step on one member, then a new link (the slave restarted, the master not), with the
    // other member a step behind or level with it.
    let steps = [
        (&file_a, format!("{new}\n{old}\n")),
        (&file_b, format!("{new}\n{old}\n")),
        (&file_a, format!("{new}\n")),
        (&file_b, format!("{new}\n")),
    ];
    for (i, (file, contents)) in steps.iter().enumerate() {
        replace(file, contents);
        b = restart_slave(&a, b, &format!("rotate-b{i}"), &args(&file_b));
    }
    assert_eq!(stat_num(&a.node, "auth_failures"), 0);

    // The old secret no longer gets in.
    let stale = dir.0.join("stale");
    replace(&stale, &format!("{old}\n"));
    let stranger = joiner("rotate-stale", a.repl_port, &args(&stale));
    wait_for("the stale secret's refusal", || (stat_num(&a.node, "auth_failures") >= 1).then_some(()));
    assert_eq!(repl_stat(&stranger.node, "role"), "starting");
    assert_eq!((repl_stat(&a.node, "role"), repl_stat(&a.node, "link")), ("master".into(), "up".into()));
}

/// A running pair moved to TLS one member at a time, as the operator rolls it, and back: with
/// `--repl-tls-allow-plaintext` a TLS member links in plaintext with a member that has no TLS
/// (joining it, or taking it in), and in TLS with one that has; without it, it would refuse.
/// No member restarts but the one being replaced, and every write reaches the new slave.
#[test]
fn a_pair_moves_to_tls_and_back_one_member_at_a_time() {
    let ca = Ca::new();
    let certs = Certs::new("migrate", &ca, &ca.leaf());
    let mut migrating = certs.args();
    migrating.push("--repl-tls-allow-plaintext".into());
    let tls = |m: &Member| repl_stat(&m.node, "tls");

    // Plaintext master, migrating slave: the slave joins in plaintext.
    let (a, b) = pair_with(["mig-a", "mig-b"], &[], &migrating);
    assert_eq!((tls(&a), tls(&b)), ("no".into(), "no".into()));
    // Migrating master (the old slave took over), plaintext slave joining it.
    let (a_port, b_port) = (a.repl_port, b.repl_port);
    drop(a);
    wait_role(&b.node, "master");
    let a = member("mig-a2", a_port, b_port, &[]);
    wait_role(&a.node, "slave");
    assert_eq!(b.node.client().call("set one 0 0 1\r\n1\r\n"), "STORED\r\n");
    wait_item(&a.node, "one", Option::is_some);
    assert_eq!(tls(&b), "no");
    // Both migrating: TLS.
    let a = restart_slave(&b, a, "mig-a3", &migrating);
    wait_for("a TLS link", || (tls(&a) == "yes" && tls(&b) == "yes").then_some(()));
    // Both required (no plaintext allowed): TLS, each side joining a migrating or a required one.
    let a = restart_slave(&b, a, "mig-a4", &certs.args());
    assert_eq!(tls(&a), "yes");
    drop(b);
    wait_role(&a.node, "master");
    let b = member("mig-b2", b_port, a_port, &strs(&certs.args()));
    wait_role(&b.node, "slave");
    assert_eq!(a.node.client().call("set two 0 0 1\r\n2\r\n"), "STORED\r\n");
    wait_item(&b.node, "two", Option::is_some);
    assert_eq!((tls(&a), tls(&b)), ("yes".into(), "yes".into()));
    // Off again: a migrating slave first, then a plaintext one.
    let b = restart_slave(&a, b, "mig-b3", &migrating);
    assert_eq!(tls(&b), "yes", "TLS whenever both speak it");
    drop(a);
    wait_role(&b.node, "master");
    let a = member("mig-a5", a_port, b_port, &[]);
    wait_role(&a.node, "slave");
    assert_eq!(b.node.client().call("set three 0 0 1\r\n3\r\n"), "STORED\r\n");
    wait_item(&a.node, "three", Option::is_some);
    assert_eq!((tls(&a), tls(&b)), ("no".into(), "no".into()));
}
