//! The two ways memcached 1.6 clients log in, as bytes: the text protocol's token (`-Y`), sent
//! as `set <any key> <flags> <exptime> <n>\r\n<user> <password>\r\n`, and the binary
//! protocol's SASL PLAIN message. No I/O, no users.

use super::text::MAX_LINE;

/// The longest token cache-node reads: memcached reads a token of any announced length, so a
/// client could make it buffer gigabytes before it has logged in.
pub const MAX_TOKEN: usize = 1024;

/// What the front of an unauthenticated text connection's buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// Not a whole line, or not the whole token yet.
    Incomplete,
    /// No line end within memcached's limit: junk, hang up.
    Close,
    /// A line that is not a token's `set`: answered `CLIENT_ERROR unauthenticated`.
    NotToken { len: usize },
    /// A token announced longer than [`MAX_TOKEN`]: refused and the connection closed, as its
    /// bytes cannot be told from commands.
    TooLong { len: usize },
    /// The token's data does not end with `\r\n`.
    BadTermination { len: usize },
    /// Fewer than two words in the token.
    BadFormat { len: usize },
    /// A user name and password to check, spanning `len` bytes with the `set` line.
    Credentials { user: &'a [u8], password: &'a [u8], len: usize },
}

/// Reads a login token from the front of `buf`, as memcached's `try_read_command_asciiauth`:
/// the key, flags and exptime of the `set` line are ignored, `noreply` too; words after the
/// password are ignored.
pub fn parse_token(buf: &[u8]) -> Token<'_> {
    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE { Token::Close } else { Token::Incomplete };
    };
    let line_len = eol + 1;
    let line = &buf[..eol];
    let mut command = words(line.strip_suffix(b"\r").unwrap_or(line));
    let is_set = command.next() == Some(b"set");
    let size = command.nth(3).and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok());
    let Some(size) = size.filter(|_| is_set) else {
        return Token::NotToken { len: line_len };
    };
    if size > MAX_TOKEN as u64 {
        return Token::TooLong { len: line_len };
    }
    let len = line_len + size as usize + 2;
    let Some(data) = buf.get(line_len..len) else {
        return Token::Incomplete;
    };
    let Some(data) = data.strip_suffix(b"\r\n") else {
        return Token::BadTermination { len };
    };
    let mut token = words(data);
    match (token.next(), token.next()) {
        (Some(user), Some(password)) => Token::Credentials { user, password, len },
        _ => Token::BadFormat { len },
    }
}

/// Space-separated words, runs of spaces counting as one, as memcached's tokenizer splits.
fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ').filter(|w| !w.is_empty())
}

/// A SASL PLAIN message (RFC 4616): `authzid NUL authcid NUL passwd`.
#[derive(Debug, PartialEq, Eq)]
pub struct Plain<'a> {
    /// Who to act as; empty for the user itself.
    pub authzid: &'a [u8],
    pub user: &'a [u8],
    pub password: &'a [u8],
}

/// Splits a PLAIN message; `None` unless it has exactly the three parts and a user name.
pub fn parse_plain(message: &[u8]) -> Option<Plain<'_>> {
    let mut parts = message.split(|&b| b == 0);
    let plain = Plain { authzid: parts.next()?, user: parts.next()?, password: parts.next()? };
    (parts.next().is_none() && !plain.user.is_empty()).then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_data_of_a_set() {
        let buf = b"set auth 0 0 13\r\nalice secret1\r\nget k\r\n";
        assert_eq!(parse_token(buf), Token::Credentials { user: b"alice", password: b"secret1", len: 32 });
        // noreply and extra words change nothing; runs of spaces count as one.
        let buf = b"set a 1 2 19 noreply\r\nalice  secret1 more\r\n";
        assert_eq!(parse_token(buf), Token::Credentials { user: b"alice", password: b"secret1", len: 43 });
    }

    #[test]
    fn a_token_waits_for_all_of_its_bytes() {
        let whole = b"set a 0 0 13\r\nalice secret1\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse_token(&whole[..cut]), Token::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn anything_else_is_not_a_token() {
        for line in [&b"get k\r\n"[..], b"set a 0 0\r\n", b"set a 0 0 x\r\n", b"set a 0 0 -1\r\n", b"version\n"] {
            assert_eq!(parse_token(line), Token::NotToken { len: line.len() }, "{line:?}");
        }
        assert_eq!(parse_token(&[b'x'; MAX_LINE]), Token::Incomplete);
        assert_eq!(parse_token(&[b'x'; MAX_LINE + 1]), Token::Close);
    }

    #[test]
    fn malformed_tokens_are_told_apart() {
        assert_eq!(parse_token(b"set a 0 0 5\r\nalice\r\n"), Token::BadFormat { len: 20 });
        assert_eq!(parse_token(b"set a 0 0 5\r\nalice12"), Token::BadTermination { len: 20 });
        assert_eq!(parse_token(b"set a 0 0 1025\r\n"), Token::TooLong { len: 16 });
        assert!(matches!(parse_token(b"set a 0 0 1024\r\n"), Token::Incomplete));
    }

    #[test]
    fn plain_has_three_parts() {
        let plain = parse_plain(b"\0alice\0secret1").unwrap();
        assert_eq!((plain.authzid, plain.user, plain.password), (&b""[..], &b"alice"[..], &b"secret1"[..]));
        assert_eq!(parse_plain(b"alice\0alice\0pw").unwrap().authzid, b"alice");
        assert_eq!(parse_plain(b"\0alice\0").unwrap().password, b"");
        assert_eq!(parse_plain(b"\0alice"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }
}
