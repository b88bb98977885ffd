//! Arbitrary bytes through the VRRP packet codec: no panic, and every advert that decodes
//! encodes to a message that decodes to the same advert. (Not to the same bytes: reserved bits,
//! auth data without auth type and a checksum of 0xffff are not kept.)
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cache_node::vrrp::packet::{self, Advert, GROUP_V4, GROUP_V6};
use libfuzzer_sys::fuzz_target;

const SRC_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn check(msg: &[u8], src: IpAddr, dst: IpAddr) {
    if let Ok(advert) = Advert::decode(msg, src, dst) {
        let again = advert.encode(src, dst).expect("a decoded advert encodes");
        assert_eq!(Advert::decode(&again, src, dst), Ok(advert));
    }
}

fuzz_target!(|data: &[u8]| {
    // As a raw IPv4 socket delivers it: header, then the VRRP message.
    if let Ok((header, msg)) = packet::parse_ipv4(data) {
        check(msg, IpAddr::V4(header.src), IpAddr::V4(header.dst));
    }
    // As a raw IPv6 socket delivers it: the VRRP message alone.
    check(data, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(GROUP_V4));
    check(data, IpAddr::V6(SRC_V6), IpAddr::V6(GROUP_V6));
});
