//! The users a node accepts: memcached's auth file (`-Y`), `user:password` per line.

use subtle::ConstantTimeEq;

/// Users and their passwords, as read from an auth file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Users(Vec<(Vec<u8>, Vec<u8>)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsersError {
    #[error("line {line}: expected user:password")]
    Malformed { line: usize },
    #[error("line {line}: {what} may not contain spaces (the text protocol's login token splits at them)")]
    Space { line: usize, what: &'static str },
    #[error("no users")]
    Empty,
}

impl Users {
    /// Parses an auth file. Unlike memcached, which keeps the first 8 entries and drops the
    /// rest without a word, every line counts; blank lines are skipped, and a line without a
    /// colon or with a space in it is an error naming the line (the password is never logged).
    pub fn parse(text: &[u8]) -> Result<Self, UsersError> {
        let mut users = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let line_no = i + 1;
            let colon = line.iter().position(|&b| b == b':').filter(|&c| c > 0);
            let Some(colon) = colon else {
                return Err(UsersError::Malformed { line: line_no });
            };
            let (user, password) = (&line[..colon], &line[colon + 1..]);
            if user.contains(&b' ') {
                return Err(UsersError::Space { line: line_no, what: "user names" });
            }
            if password.contains(&b' ') {
                return Err(UsersError::Space { line: line_no, what: "passwords" });
            }
            users.push((user.to_vec(), password.to_vec()));
        }
        if users.is_empty() {
            return Err(UsersError::Empty);
        }
        Ok(Self(users))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `user` has `password`. Every entry is compared in constant time, so the time
    /// taken tells nothing about which part of which entry differed.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.0.iter().fold(false, |found, (u, p)| {
            let matched = u.as_slice().ct_eq(user) & p.as_slice().ct_eq(password);
            found | bool::from(matched)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_user() {
        let lines: String = (0..20).map(|i| format!("user{i}:pw:{i}\r\n")).collect();
        let users = Users::parse(format!("{lines}\n").as_bytes()).unwrap();
        assert_eq!(users.len(), 20, "memcached would keep 8");
        assert!(users.check(b"user19", b"pw:19"), "passwords may hold colons");
        assert!(!users.check(b"user19", b"pw:18"));
        assert!(!users.check(b"user1", b"pw:19"));
        assert!(!users.check(b"user20", b""));
    }

    #[test]
    fn a_last_line_needs_no_newline() {
        let users = Users::parse(b"alice:secret1").unwrap();
        assert!(users.check(b"alice", b"secret1"), "memcached would chop the last character");
        assert!(!users.check(b"alice", b"secret"));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert_eq!(Users::parse(b"a:b\nnocolon\n"), Err(UsersError::Malformed { line: 2 }));
        assert_eq!(Users::parse(b":pw\n"), Err(UsersError::Malformed { line: 1 }));
        assert_eq!(Users::parse(b"a:b c\n"), Err(UsersError::Space { line: 1, what: "passwords" }));
        assert_eq!(Users::parse(b"\n\n"), Err(UsersError::Empty));
        let message = Users::parse(b"a:b\n\nx y:z").unwrap_err().to_string();
        assert_eq!(
            message,
            "line 3: user names may not contain spaces (the text protocol's login token splits at them)"
        );
    }

    #[test]
    fn an_empty_password_is_a_password() {
        let users = Users::parse(b"guest:\n").unwrap();
        assert!(users.check(b"guest", b""));
        assert!(!users.check(b"guest", b"x"));
    }
}
