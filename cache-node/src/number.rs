//! Numbers read the way memcached reads them: C's `strtoull`/`strtol` plus memcached's
//! `safe_*` checks. Matching its leniency (leading space, signs, trailing whitespace) and its
//! truncations keeps replies identical to memcached's.

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Parses an unsigned decimal the way memcached's `safe_strtoull` (strtoull plus checks) does:
/// leading whitespace and a sign are accepted, the number must be followed by whitespace or the
/// end, negative numbers and overflow are rejected.
pub fn parse_counter(s: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits_start = i;
    let mut value: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        value = value.checked_mul(10)?.checked_add(u64::from(s[i] - b'0'))?;
        i += 1;
    }
    if i == digits_start {
        // strtoull converted nothing: safe_strtoull refuses that.
        return None;
    }
    // memcached stores values with their trailing CRLF, so the end of the value reads as space;
    // C strings end at a NUL.
    if i < s.len() && !is_space(s[i]) && s[i] != 0 {
        return None;
    }
    if negative {
        // strtoull negates; memcached refuses any result that looks negative as signed.
        let v = value.wrapping_neg();
        return if (v as i64) < 0 { None } else { Some(v) };
    }
    Some(value)
}

/// memcached's `safe_strtol` into an `int32_t`: parsed as a 64-bit long (overflow is an
/// error) and then truncated to 32 bits, as the C assignment does.
pub fn parse_i32(s: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits_start = i;
    let mut value: i64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        let d = i64::from(s[i] - b'0');
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(d)? } else { value.checked_add(d)? };
        i += 1;
    }
    if i == digits_start || (i < s.len() && !is_space(s[i]) && s[i] != 0) {
        return None;
    }
    Some(i64::from(value as i32))
}

/// memcached's `safe_strtoul`: flags are parsed as an unsigned long and the low 32 bits kept.
pub fn parse_u32_truncating(s: &[u8]) -> Option<u32> {
    parse_counter(s).map(|v| v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_truncate_like_memcached() {
        assert_eq!(parse_i32(b"10"), Some(10));
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"+5"), Some(5));
        assert_eq!(parse_i32(b"4294967297"), Some(1));
        assert_eq!(parse_i32(b"99999999999"), Some(1215752191));
        assert_eq!(parse_i32(b"99999999999999999999"), None);
        assert_eq!(parse_i32(b"0x1"), None);
        assert_eq!(parse_i32(b""), None);
        assert_eq!(parse_u32_truncating(b"4294967296"), Some(0));
    }

    #[test]
    fn counters_parse_like_memcached() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"5  "), Some(5));
        assert_eq!(parse_counter(b" 7"), Some(7));
        assert_eq!(parse_counter(b"+3"), Some(3));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b"-1"), None);
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b"12abc"), None);
        assert_eq!(parse_counter(b"abc"), None);
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"  "), None);
        assert_eq!(parse_counter(b"\rz"), None);
        assert_eq!(parse_counter(b"0\x00\x01\xff"), Some(0));
    }
}
