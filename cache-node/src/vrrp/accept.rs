//! Which received advertisements an instance acts on (RFC 5798 §7.1, RFC 3768 §7.1): every
//! VRRP packet on the interface reaches every instance's socket, so other routers' VRIDs are
//! ignored quietly, and anything malformed or mismatched is dropped with a reason to log.

use std::net::IpAddr;

use super::packet::{Advert, Version};

/// What an instance expects of its peers' adverts.
#[derive(Debug, Clone)]
pub struct Expect {
    pub version: Version,
    pub vrid: u8,
    pub interval_cs: u16,
    pub password: Option<Vec<u8>>,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept(Advert),
    /// For another virtual router: not ours to judge.
    Ignore,
    /// Ours but invalid; the reason is for the log.
    Drop(String),
}

pub fn judge(expect: &Expect, src: IpAddr, dst: IpAddr, ttl: u8, payload: &[u8]) -> Verdict {
    let advert = match Advert::decode(payload, src, dst) {
        Ok(advert) => advert,
        // A packet for another VRID that we cannot parse is still none of our business.
        Err(_) if payload.get(1).is_some_and(|&vrid| vrid != expect.vrid) => return Verdict::Ignore,
        Err(e) => return Verdict::Drop(format!("from {src}: {e}")),
    };
    if advert.vrid != expect.vrid {
        return Verdict::Ignore;
    }
    // A router that forwarded the packet is not on our link (RFC 5798 §7.1).
    if ttl != 255 {
        return Verdict::Drop(format!("from {src}: TTL/hop limit {ttl}, expected 255"));
    }
    if advert.version != expect.version {
        return Verdict::Drop(format!(
            "from {src}: VRRP version {:?}, configured {:?}",
            advert.version, expect.version
        ));
    }
    if advert.password != expect.password {
        return Verdict::Drop(format!("from {src}: authentication does not match"));
    }
    if expect.version == Version::V2 && advert.interval_cs != expect.interval_cs {
        return Verdict::Drop(format!(
            "from {src}: advert interval {} s, configured {} s",
            advert.interval_cs / 100,
            expect.interval_cs / 100
        ));
    }
    let mut theirs = advert.addresses.clone();
    let mut ours = expect.addresses.clone();
    theirs.sort();
    ours.sort();
    if advert.priority != super::state::PRIORITY_OWNER && theirs != ours {
        return Verdict::Drop(format!("from {src}: virtual addresses {theirs:?} differ from ours {ours:?}"));
    }
    Verdict::Accept(advert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::GROUP_V4;

    fn expect() -> Expect {
        Expect {
            version: Version::V2,
            vrid: 51,
            interval_cs: 100,
            password: Some(b"1111".to_vec()),
            addresses: vec!["192.0.2.100".parse().unwrap()],
        }
    }

    fn advert() -> Advert {
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            addresses: vec!["192.0.2.100".parse().unwrap()],
            password: Some(b"1111".to_vec()),
        }
    }

    fn judged(a: &Advert, ttl: u8) -> Verdict {
        let (src, dst) = ("192.0.2.1".parse().unwrap(), IpAddr::V4(GROUP_V4));
        judge(&expect(), src, dst, ttl, &a.encode(src, dst).unwrap())
    }

    #[test]
    fn a_matching_advert_is_accepted() {
        assert_eq!(judged(&advert(), 255), Verdict::Accept(advert()));
    }

    #[test]
    fn other_vrids_are_ignored() {
        assert_eq!(judged(&Advert { vrid: 52, ..advert() }, 255), Verdict::Ignore);
        assert_eq!(judged(&Advert { vrid: 52, ..advert() }, 1), Verdict::Ignore);
    }

    #[test]
    fn mismatches_are_dropped_with_a_reason() {
        let reason = |v: Verdict| match v {
            Verdict::Drop(reason) => reason,
            other => panic!("expected a drop, got {other:?}"),
        };
        assert!(reason(judged(&advert(), 254)).contains("TTL"));
        assert!(
            reason(judged(&Advert { password: Some(b"2222".to_vec()), ..advert() }, 255)).contains("authentication")
        );
        assert!(reason(judged(&Advert { password: None, ..advert() }, 255)).contains("authentication"));
        assert!(reason(judged(&Advert { interval_cs: 200, ..advert() }, 255)).contains("interval 2 s"));
        let other = vec!["192.0.2.101".parse().unwrap()];
        assert!(reason(judged(&Advert { addresses: other.clone(), ..advert() }, 255)).contains("virtual addresses"));
        assert!(matches!(judged(&Advert { addresses: other, priority: 255, ..advert() }, 255), Verdict::Accept(_)));
        let src = "192.0.2.1".parse().unwrap();
        assert!(reason(judge(&expect(), src, IpAddr::V4(GROUP_V4), 255, &[0x21, 51, 0])).contains("192.0.2.1"));
    }
}
