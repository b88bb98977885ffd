use super::*;

const SERVER: u64 = 1;
const CLIENT: u64 = 2;
const SERVER_NONCE: Nonce = [0x11; NONCE_LEN];
const CLIENT_NONCE: Nonce = [0x22; NONCE_LEN];

fn secret() -> Secret {
    Secret::from_bytes(b"0123456789abcdef").unwrap()
}

fn other_secret() -> Secret {
    Secret::from_bytes(b"0123456789abcdeF").unwrap()
}

fn unhex(s: &str) -> Proof {
    let mut out = [0; PROOF_LEN];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// The client's answer to the fixed `Hello`.
fn client(secret: &Secret) -> ClientHandshake {
    ClientHandshake::with_nonce(secret, CLIENT, &SERVER_NONCE, CLIENT_NONCE)
}

fn server() -> ServerHandshake {
    ServerHandshake::with_nonce(SERVER, SERVER_NONCE)
}

#[test]
fn proofs_are_pinned() {
    // Computed independently (Python's hmac) over label || client id || server nonce || client
    // nonce for the client, label || server id || client id || server nonce || client nonce for
    // the server: a change here breaks the protocol.
    let client = client(&secret());
    assert_eq!(client.proof(), unhex("6c8912a2dc3455db94d159959ea42b1623dff9b821b4d491245b148b41888d72"));
    let server_proof = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client.proof()).unwrap();
    assert_eq!(server_proof, unhex("07372e5c50dd14b0e5c73c97d81abdff245086b34685758d7eabb498416833dd"));
}

#[test]
fn a_correct_exchange_verifies_both_ways() {
    let secret = secret();
    let server = ServerHandshake::new(SERVER).unwrap();
    let client = ClientHandshake::new(&secret, CLIENT, &server.nonce()).unwrap();
    let server_proof =
        server.verify_client(std::slice::from_ref(&secret), CLIENT, &client.nonce(), &client.proof()).unwrap();
    client.verify_server(&secret, SERVER, &server_proof).unwrap();
}

#[test]
fn fresh_nonces_differ() {
    let a = ServerHandshake::new(SERVER).unwrap().nonce();
    let b = ServerHandshake::new(SERVER).unwrap().nonce();
    assert_ne!(a, b);
    let c = ClientHandshake::new(&secret(), CLIENT, &a).unwrap();
    let d = ClientHandshake::new(&secret(), CLIENT, &a).unwrap();
    assert_ne!(c.nonce(), d.nonce());
    assert_ne!(c.proof(), d.proof());
}

#[test]
fn a_client_with_another_secret_is_refused() {
    let client = client(&other_secret());
    let err = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client.proof()).unwrap_err();
    assert!(matches!(err, AuthError::BadClientProof));
}

#[test]
fn a_server_with_another_secret_is_refused() {
    let proof = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client(&secret()).proof()).unwrap();
    let err = client(&other_secret()).verify_server(&other_secret(), SERVER, &proof).unwrap_err();
    assert!(matches!(err, AuthError::BadServerProof));
}

#[test]
fn swapped_nonces_fail() {
    let swapped = ClientHandshake::with_nonce(&secret(), CLIENT, &CLIENT_NONCE, SERVER_NONCE);
    assert!(server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &swapped.proof()).is_err());
    // The client's nonce as the server would see it if they were swapped on the way.
    let client = client(&secret());
    assert!(server().verify_client(&[secret()], CLIENT, &SERVER_NONCE, &client.proof()).is_err());
}

#[test]
fn proofs_are_bound_to_the_node_ids() {
    // The client's proof names the client: it does not pass for another one.
    let client = ClientHandshake::with_nonce(&secret(), 3, &SERVER_NONCE, CLIENT_NONCE);
    assert!(server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client.proof()).is_err());
    // The server's proof names the server: `AuthOk` cannot claim another id.
    let proof = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &self::client(&secret()).proof()).unwrap();
    assert!(self::client(&secret()).verify_server(&secret(), 3, &proof).is_err());
    // Nor a proof made for another client.
    let other = ServerHandshake::with_nonce(SERVER, SERVER_NONCE);
    let for_other = ClientHandshake::with_nonce(&secret(), 3, &SERVER_NONCE, CLIENT_NONCE);
    let proof = other.verify_client(&[secret()], 3, &CLIENT_NONCE, &for_other.proof()).unwrap();
    assert!(self::client(&secret()).verify_server(&secret(), SERVER, &proof).is_err());
}

#[test]
fn a_proof_cannot_be_reflected_to_the_other_role() {
    // The server's own proof, sent back to it as a client's, fails: the labels differ.
    let server_proof = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client(&secret()).proof()).unwrap();
    assert!(server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &server_proof).is_err());
    // And the client's proof does not pass as the server's.
    let client = client(&secret());
    let own = client.proof();
    assert!(client.verify_server(&secret(), SERVER, &own).is_err());
    // Nor does a server's proof made with the roles swapped (the peer playing "server" with
    // the client's nonce as its own).
    let mirrored = ServerHandshake::with_nonce(CLIENT, CLIENT_NONCE);
    let mirrored_client = ClientHandshake::with_nonce(&secret(), SERVER, &CLIENT_NONCE, SERVER_NONCE);
    let mirrored_proof = mirrored.verify_client(&[secret()], SERVER, &SERVER_NONCE, &mirrored_client.proof()).unwrap();
    assert!(self::client(&secret()).verify_server(&secret(), CLIENT, &mirrored_proof).is_err());
    assert!(self::client(&secret()).verify_server(&secret(), SERVER, &mirrored_proof).is_err());
}

#[test]
fn a_replayed_client_answer_fails_against_a_new_nonce() {
    let recorded = client(&secret());
    let fresh = ServerHandshake::new(SERVER).unwrap();
    assert!(fresh.verify_client(&[secret()], CLIENT, &recorded.nonce(), &recorded.proof()).is_err());
}

#[test]
fn a_replayed_server_answer_fails_against_a_new_nonce() {
    let recorded = server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &client(&secret()).proof()).unwrap();
    let fresh = ClientHandshake::new(&secret(), CLIENT, &SERVER_NONCE).unwrap();
    assert!(fresh.verify_server(&secret(), SERVER, &recorded).is_err());
}

#[test]
fn every_bit_of_a_proof_counts() {
    let good = client(&secret()).proof();
    for i in 0..PROOF_LEN * 8 {
        let mut bad = good;
        bad[i / 8] ^= 1 << (i % 8);
        assert!(server().verify_client(&[secret()], CLIENT, &CLIENT_NONCE, &bad).is_err(), "bit {i}");
    }
}

#[test]
fn debug_shows_no_secret() {
    assert_eq!(format!("{:?}", secret()), "Secret(..)");
}

#[test]
fn short_and_empty_secrets_are_refused() {
    assert!(matches!(Secret::from_bytes(b""), Err(SecretError::Empty { path: None })));
    let err = Secret::from_bytes(&[b'x'; MIN_SECRET_LEN - 1]).unwrap_err();
    assert!(matches!(err, SecretError::TooShort { path: None, line: None, len: 15 }));
    assert_eq!(err.to_string(), "the replication secret is 15 bytes long; at least 16 are required");
    Secret::from_bytes(&[b'x'; MIN_SECRET_LEN]).unwrap();
}

/// Whether two secrets are the same key: one's proof passes the other's check.
fn same(a: &Secret, b: &Secret) -> bool {
    server().verify_client(std::slice::from_ref(b), CLIENT, &CLIENT_NONCE, &client(a).proof()).is_ok()
}

/// The secrets of a file's contents.
fn parsed(contents: &[u8]) -> Result<Secrets, SecretError> {
    Secrets::parse(contents, Path::new("/etc/secret"))
}

#[test]
fn a_secret_file_holds_one_secret_per_line_without_line_ends() {
    let bare = Secret::from_bytes(b"0123456789abcdef").unwrap();
    for contents in
        [&b"0123456789abcdef\n"[..], b"0123456789abcdef\r\n", b"0123456789abcdef", b"\n0123456789abcdef\n\n"]
    {
        let secrets = parsed(contents).unwrap();
        assert_eq!(secrets.all().len(), 1, "{contents:?}");
        assert!(same(secrets.signing(), &bare), "{contents:?}");
    }
    // Nothing else is trimmed.
    assert!(!same(parsed(b" 0123456789abcdef \n").unwrap().signing(), &bare));
}

#[test]
fn with_several_secrets_the_first_proves_and_any_verifies() {
    let (new, old) = (Secret::from_bytes(b"the-new-secret-0123").unwrap(), secret());
    let both = parsed(b"the-new-secret-0123\r\n\n   \n0123456789abcdef\n").unwrap();
    assert_eq!(both.all().len(), 2, "blank lines are ignored");
    assert!(same(both.signing(), &new));
    // A server holding both accepts either client, and answers under the client's secret.
    for secret in [&new, &old] {
        let client = self::client(secret);
        let proof = server().verify_client(both.all(), CLIENT, &CLIENT_NONCE, &client.proof()).unwrap();
        client.verify_server(secret, SERVER, &proof).unwrap();
    }
    let stranger = self::client(&other_secret());
    assert!(server().verify_client(both.all(), CLIENT, &CLIENT_NONCE, &stranger.proof()).is_err());
}

#[test]
fn bad_secret_files_are_refused_with_their_path_and_line() {
    for blank in [&b""[..], b"\n", b"\r\n \n"] {
        let err = parsed(blank).unwrap_err();
        assert!(matches!(err, SecretError::Empty { path: Some(_) }), "{blank:?}");
        assert_eq!(err.to_string(), "the replication secret in /etc/secret is empty");
    }
    let err = parsed(b"0123456789abcdef\nhunter2\n").unwrap_err();
    assert!(matches!(err, SecretError::TooShort { len: 7, line: Some(2), .. }));
    assert_eq!(
        err.to_string(),
        "the replication secret in /etc/secret (line 2) is 7 bytes long; at least 16 are required"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, b"0123456789abcdef\n").unwrap();
    assert!(same(Secrets::from_file(&file).unwrap().signing(), &secret()));
    let missing = dir.path().join("missing");
    let err = Secrets::from_file(&missing).unwrap_err();
    assert!(matches!(&err, SecretError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound));
    assert!(err.to_string().starts_with(&format!("cannot read the replication secret from {}: ", missing.display())));
}
