use super::*;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn v6(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const DST4: IpAddr = IpAddr::V4(GROUP_V4);
const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const DST6: IpAddr = IpAddr::V6(GROUP_V6);

// Hand-built from the RFC layouts. Each checksum is worked out in the comment: the 16-bit words
// added up (pseudo-header first for VRRPv3, checksum field as 0), the carry folded back in, and
// the one's complement of that.

/// VRRPv2, auth type 1 password "pw": vrid 1, priority 100, one address 192.0.2.10, 1 s.
/// 2101+6401+0101+0000+c000+020a+7077+0000+0000+0000 = 1b884 → b885 → ~ = 477a.
const HAND_V2_PASS: &str = "21 01 64 01  01 01 47 7a  c0 00 02 0a  70 77 00 00 00 00 00 00";

/// VRRPv2, auth type 0: vrid 7, priority 255, addresses 192.0.2.1 and 192.0.2.2, 3 s.
/// 2107+ff02+0003+0000+c000+0201+c000+0202+0000×4 = 2a40f → a411 → ~ = 5bee.
const HAND_V2_NONE: &str = "21 07 ff 02  00 03 5b ee  c0 00 02 01  c0 00 02 02  00 00 00 00 00 00 00 00";

/// VRRPv3 over IPv4 from 192.0.2.1 to 224.0.0.18: vrid 10, priority 100, 192.0.2.100, 100 cs.
/// Pseudo-header c000+0201+e000+0012+0070+000c (protocol 112, length 12), then
/// 310a+6401+0064+0000+c000+0264 = 2fa62 → fa64 → ~ = 059b.
const HAND_V3_V4: &str = "31 0a 64 01  00 64 05 9b  c0 00 02 64";

/// VRRPv3 over IPv6 from fe80::1 to ff02::12: vrid 10, priority 100, 2001:db8::100, 100 cs.
/// Pseudo-header fe80+0001+ff02+0012+0000+0018+0000+0070 (length 24 in 32 bits, next header
/// 112 after 3 zero bytes), then 310a+6401+0064+0000+2001+0db8+0100 = 2c245 → c247 → ~ = 3db8.
const HAND_V3_V6: &str = "31 0a 64 01  00 64 3d b8  20 01 0d b8 00 00 00 00 00 00 00 00 00 00 01 00";

fn hand_vectors() -> Vec<(&'static str, IpAddr, IpAddr, Advert)> {
    vec![
        (
            HAND_V2_PASS,
            SRC4,
            DST4,
            Advert {
                version: Version::V2,
                vrid: 1,
                priority: 100,
                interval_cs: 100,
                addresses: vec![v4([192, 0, 2, 10])],
                password: Some(b"pw".to_vec()),
            },
        ),
        (
            HAND_V2_NONE,
            SRC4,
            DST4,
            Advert {
                version: Version::V2,
                vrid: 7,
                priority: 255,
                interval_cs: 300,
                addresses: vec![v4([192, 0, 2, 1]), v4([192, 0, 2, 2])],
                password: None,
            },
        ),
        (
            HAND_V3_V4,
            SRC4,
            DST4,
            Advert {
                version: Version::V3,
                vrid: 10,
                priority: 100,
                interval_cs: 100,
                addresses: vec![v4([192, 0, 2, 100])],
                password: None,
            },
        ),
        (
            HAND_V3_V6,
            SRC6,
            DST6,
            Advert {
                version: Version::V3,
                vrid: 10,
                priority: 100,
                interval_cs: 100,
                addresses: vec![v6("2001:db8::100")],
                password: None,
            },
        ),
    ]
}

#[test]
fn hand_built_vectors_decode_and_encode() {
    for (bytes, src, dst, advert) in hand_vectors() {
        let bytes = hex(bytes);
        assert_eq!(Advert::decode(&bytes, src, dst), Ok(advert.clone()));
        assert_eq!(advert.encode(src, dst), Ok(bytes));
    }
}

// Sent by keepalived 2.2.7 (`keepalived -n -l -D --vrrp`) in a network namespace made for the
// capture: a veth pair, keepalived on veth0 (192.0.2.1/24, fe80::b062:feff:fe1b:b654), a Python
// AF_PACKET socket on veth1 keeping the first advert of each instance. Instances: V2PASS (vrid
// 51, priority 150, advert_int 1, auth PASS "secret", 192.0.2.100 and .101), V2NONE (vrid 52,
// priority 100, advert_int 2, 198.51.100.10), V3V4 (version 3, vrid 53, priority 200, advert_int
// 0.5, 192.0.2.200 and 198.51.100.200), V3V6 (version 3, vrid 54, priority 254, advert_int 1,
// native_ipv6, 2001:db8::100). The IPv4 ones are whole datagrams; of the IPv6 one, the IPv6
// header is left out and its addresses given (the kernel computed that checksum).
// The other way round, checked once by hand the same way: adverts this codec encoded (the same
// instances at higher priorities, sent from a second namespace through veth1) made keepalived
// log "Master received advert from <veth1 address> with higher priority" for all four.

const KEEPALIVED_V2_PASS: &str = "45c0002c00010000ff70188dc0000201e0000012\
                                  21339602010186b2c0000264c00002657365637265740000";
const KEEPALIVED_V2_NONE: &str = "45c0002800010000ff701891c0000201e0000012\
                                  213464010002508ac633640a0000000000000000";
const KEEPALIVED_V3_V4: &str = "45c0002400010000ff701895c0000201e0000012\
                                3135c8020032763cc00002c8c63364c8";
const KEEPALIVED_V3_V6: &str = "3136fe0100643fb920010db8000000000000000000000100";

#[test]
fn keepalived_ipv4_captures() {
    let cases = [
        (
            KEEPALIVED_V2_PASS,
            Advert {
                version: Version::V2,
                vrid: 51,
                priority: 150,
                interval_cs: 100,
                addresses: vec![v4([192, 0, 2, 100]), v4([192, 0, 2, 101])],
                password: Some(b"secret".to_vec()),
            },
        ),
        (
            KEEPALIVED_V2_NONE,
            Advert {
                version: Version::V2,
                vrid: 52,
                priority: 100,
                interval_cs: 200,
                addresses: vec![v4([198, 51, 100, 10])],
                password: None,
            },
        ),
        (
            KEEPALIVED_V3_V4,
            Advert {
                version: Version::V3,
                vrid: 53,
                priority: 200,
                interval_cs: 50,
                addresses: vec![v4([192, 0, 2, 200]), v4([198, 51, 100, 200])],
                password: None,
            },
        ),
    ];
    for (datagram, advert) in cases {
        let datagram = hex(datagram);
        let (header, msg) = parse_ipv4(&datagram).unwrap();
        let expected_header =
            Ipv4Header { src: Ipv4Addr::new(192, 0, 2, 1), dst: GROUP_V4, ttl: 255, protocol: IPPROTO_VRRP };
        assert_eq!(header, expected_header);
        let (src, dst) = (IpAddr::V4(header.src), IpAddr::V4(header.dst));
        assert_eq!(Advert::decode(msg, src, dst), Ok(advert.clone()));
        assert_eq!(advert.encode(src, dst).unwrap(), msg, "we encode exactly as keepalived does");
    }
}

#[test]
fn keepalived_ipv6_capture() {
    let msg = hex(KEEPALIVED_V3_V6);
    let src = v6("fe80::b062:feff:fe1b:b654");
    let advert = Advert {
        version: Version::V3,
        vrid: 54,
        priority: 254,
        interval_cs: 100,
        addresses: vec![v6("2001:db8::100")],
        password: None,
    };
    assert_eq!(Advert::decode(&msg, src, DST6), Ok(advert.clone()));
    assert_eq!(advert.encode(src, DST6), Ok(msg));
}

fn sample(version: Version) -> Advert {
    Advert { version, vrid: 42, priority: 100, interval_cs: 100, addresses: vec![v4([192, 0, 2, 10])], password: None }
}

#[test]
fn round_trips_at_the_edges() {
    let many4: Vec<IpAddr> = (0..=255).map(|i| v4([198, 51, 100, i])).collect();
    let many6: Vec<IpAddr> = (0..255u16).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))).collect();
    let cases = [
        (Advert { addresses: vec![], ..sample(Version::V2) }, SRC4, DST4),
        (Advert { addresses: many4[..255].to_vec(), interval_cs: 25500, ..sample(Version::V2) }, SRC4, DST4),
        (Advert { password: Some(b"12345678".to_vec()), interval_cs: 0, ..sample(Version::V2) }, SRC4, DST4),
        (Advert { password: Some(b"\0x".to_vec()), priority: 0, ..sample(Version::V2) }, SRC4, DST4),
        (Advert { password: Some(vec![]), vrid: 255, ..sample(Version::V2) }, SRC4, DST4),
        (Advert { interval_cs: 4095, priority: 255, ..sample(Version::V3) }, SRC4, DST4),
        (Advert { interval_cs: 1, addresses: vec![], ..sample(Version::V3) }, SRC4, v4([192, 0, 2, 2])),
        (Advert { addresses: many6, ..sample(Version::V3) }, SRC6, DST6),
    ];
    for (advert, src, dst) in cases {
        let msg = advert.encode(src, dst).unwrap();
        assert_eq!(Advert::decode(&msg, src, dst), Ok(advert), "{msg:02x?}");
    }
}

#[test]
fn v3_checksum_depends_on_the_pseudo_header() {
    let advert = sample(Version::V3);
    let msg = advert.encode(SRC4, DST4).unwrap();
    let other = v4([192, 0, 2, 99]);
    assert!(matches!(Advert::decode(&msg, other, DST4), Err(PacketError::Checksum { .. })));
    assert!(matches!(Advert::decode(&msg, SRC4, other), Err(PacketError::Checksum { .. })));
    // VRRPv2's does not.
    let msg = sample(Version::V2).encode(SRC4, DST4).unwrap();
    assert!(Advert::decode(&msg, other, other).is_ok());
}

#[test]
fn ignored_fields() {
    // VRRPv3 reserved bits set: ignored (the checksum is redone to cover them).
    let mut msg = hex(HAND_V3_V4);
    msg[4] |= 0xf0;
    fix_checksum(&mut msg, SRC4, DST4);
    assert_eq!(Advert::decode(&msg, SRC4, DST4).unwrap().interval_cs, 100);
    // VRRPv2 auth data with auth type 0: ignored.
    let mut msg = hex(HAND_V2_NONE);
    msg[16] = b'x';
    fix_checksum(&mut msg, SRC4, DST4);
    assert_eq!(Advert::decode(&msg, SRC4, DST4).unwrap().password, None);
    // A password with a zero inside keeps it; only the padding after it goes.
    let mut msg = hex(HAND_V2_PASS);
    msg[12..20].copy_from_slice(b"a\0b\0\0\0\0\0");
    fix_checksum(&mut msg, SRC4, DST4);
    assert_eq!(Advert::decode(&msg, SRC4, DST4).unwrap().password, Some(b"a\0b".to_vec()));
}

#[test]
fn checksum_of_ffff_is_accepted_for_0000() {
    // One's complement has two zeros; a sender may write either. The vrid (low byte of a word)
    // and priority (high byte) together reach every sum, so some pair gives a checksum of 0.
    let mut msg = (0..=255u8)
        .flat_map(|vrid| (0..=255u8).map(move |priority| Advert { vrid, priority, ..sample(Version::V2) }))
        .map(|advert| advert.encode(SRC4, DST4).unwrap())
        .find(|msg| msg[6..8] == [0, 0])
        .unwrap();
    let advert = Advert::decode(&msg, SRC4, DST4).unwrap();
    msg[6..8].copy_from_slice(&[0xff, 0xff]);
    assert_eq!(Advert::decode(&msg, SRC4, DST4), Ok(advert));
}

/// Rewrites `msg`'s checksum after a test changed it, using the codec's own checksum.
fn fix_checksum(msg: &mut [u8], src: IpAddr, dst: IpAddr) {
    let version = if msg[0] >> 4 == 2 { Version::V2 } else { Version::V3 };
    let ends = Endpoints::new(version, src, dst).unwrap();
    let sum = ends.checksum(version, msg);
    msg[6..8].copy_from_slice(&sum);
}

#[test]
fn decode_errors() {
    let v2 = hex(HAND_V2_NONE);
    let v3 = hex(HAND_V3_V4);
    let with = |base: &[u8], at: usize, value: u8| {
        let mut msg = base.to_vec();
        msg[at] = value;
        msg
    };
    let fixed = |mut msg: Vec<u8>| {
        fix_checksum(&mut msg, SRC4, DST4);
        msg
    };
    let mut longer = v3.clone();
    longer.push(0);
    let cases = [
        (v2[..7].to_vec(), SRC4, DST4, PacketError::Truncated { len: 7 }),
        (vec![], SRC4, DST4, PacketError::Truncated { len: 0 }),
        (with(&v2, 0, 0x11), SRC4, DST4, PacketError::Version { version: 1 }),
        (with(&v2, 0, 0x41), SRC4, DST4, PacketError::Version { version: 4 }),
        (with(&v2, 0, 0x22), SRC4, DST4, PacketError::NotAdvertisement { kind: 2 }),
        (v3.clone(), SRC4, DST6, PacketError::FamilyMismatch { src: SRC4, dst: DST6 }),
        (v3.clone(), SRC6, DST4, PacketError::FamilyMismatch { src: SRC6, dst: DST4 }),
        (v2.clone(), SRC6, DST6, PacketError::V2OverIpv6 { src: SRC6 }),
        (v2[..v2.len() - 1].to_vec(), SRC4, DST4, PacketError::Length { len: 23, expected: 24, count: 2 }),
        (longer, SRC4, DST4, PacketError::Length { len: 13, expected: 12, count: 1 }),
        // An IPv4 message read as IPv6: one address needs 16 bytes.
        (v3.clone(), SRC6, DST6, PacketError::Length { len: 12, expected: 24, count: 1 }),
        (with(&v3, 3, 2), SRC4, DST4, PacketError::Length { len: 12, expected: 16, count: 2 }),
        (with(&v2, 7, 0xef), SRC4, DST4, PacketError::Checksum { got: 0x5bef, computed: 0x5bee }),
        (with(&v3, 2, 101), SRC4, DST4, PacketError::Checksum { got: 0x059b, computed: 0x049b }),
        (fixed(with(&v2, 4, 2)), SRC4, DST4, PacketError::AuthType { auth_type: 2 }),
        (fixed(with(&v2, 4, 254)), SRC4, DST4, PacketError::AuthType { auth_type: 254 }),
    ];
    for (msg, src, dst, error) in cases {
        assert_eq!(Advert::decode(&msg, src, dst), Err(error), "{msg:02x?} from {src} to {dst}");
    }
}

#[test]
fn encode_errors() {
    let v2 = sample(Version::V2);
    let v3 = sample(Version::V3);
    let cases = [
        (v3.clone(), SRC4, DST6, PacketError::FamilyMismatch { src: SRC4, dst: DST6 }),
        (v2.clone(), SRC6, DST6, PacketError::V2OverIpv6 { src: SRC6 }),
        (
            Advert { addresses: vec![v4([192, 0, 2, 1]); 256], ..v2.clone() },
            SRC4,
            DST4,
            PacketError::TooManyAddresses { count: 256 },
        ),
        (v3.clone(), SRC6, DST6, PacketError::AddressFamily { address: v4([192, 0, 2, 10]), src: SRC6 }),
        (
            Advert { addresses: vec![v4([192, 0, 2, 1]), v6("2001:db8::1")], ..v3.clone() },
            SRC4,
            DST4,
            PacketError::AddressFamily { address: v6("2001:db8::1"), src: SRC4 },
        ),
        (Advert { interval_cs: 150, ..v2.clone() }, SRC4, DST4, PacketError::V2Interval { interval_cs: 150 }),
        (Advert { interval_cs: 25600, ..v2.clone() }, SRC4, DST4, PacketError::V2Interval { interval_cs: 25600 }),
        (Advert { interval_cs: 4096, ..v3.clone() }, SRC4, DST4, PacketError::V3Interval { interval_cs: 4096 }),
        (
            Advert { password: Some(b"123456789".to_vec()), ..v2.clone() },
            SRC4,
            DST4,
            PacketError::PasswordTooLong { len: 9 },
        ),
        (Advert { password: Some(b"pw\0".to_vec()), ..v2.clone() }, SRC4, DST4, PacketError::PasswordTrailingZero),
        (Advert { password: Some(b"pw".to_vec()), ..v3.clone() }, SRC4, DST4, PacketError::V3Password),
    ];
    for (advert, src, dst, error) in cases {
        assert_eq!(advert.encode(src, dst), Err(error), "{advert:?} from {src} to {dst}");
    }
}

#[test]
fn parse_ipv4_cuts_options_and_padding() {
    // IHL 6 (4 bytes of options), total length 28, then 2 bytes of link-layer padding.
    let mut datagram = hex("46c0001c00010000ff700000c0000201e0000012 01010101");
    datagram.extend_from_slice(b"payl");
    datagram.extend_from_slice(b"pa");
    let (header, payload) = parse_ipv4(&datagram).unwrap();
    assert_eq!(header, Ipv4Header { src: Ipv4Addr::new(192, 0, 2, 1), dst: GROUP_V4, ttl: 255, protocol: 112 });
    assert_eq!(payload, b"payl");
}

#[test]
fn parse_ipv4_errors() {
    let good = hex(KEEPALIVED_V3_V4);
    let with = |at: usize, value: u8| {
        let mut datagram = good.clone();
        datagram[at] = value;
        datagram
    };
    let cases = [
        (good[..19].to_vec(), PacketError::Ipv4Truncated { len: 19 }),
        (with(0, 0x65), PacketError::NotIpv4 { version: 6 }),
        (with(0, 0x44), PacketError::Ipv4HeaderLength { ihl: 4 }),
        (with(3, 0x25), PacketError::Ipv4TotalLength { total: 0x25, header_len: 20, len: 36 }),
        (with(3, 0x13), PacketError::Ipv4TotalLength { total: 0x13, header_len: 20, len: 36 }),
        // IHL 15 (60 bytes) in a 36-byte datagram.
        (with(0, 0x4f), PacketError::Ipv4TotalLength { total: 0x24, header_len: 60, len: 36 }),
    ];
    for (datagram, error) in cases {
        assert_eq!(parse_ipv4(&datagram), Err(error), "{datagram:02x?}");
    }
}

#[test]
fn errors_say_what_was_seen() {
    let error = PacketError::Checksum { got: 0x1234, computed: 0xabcd };
    assert_eq!(error.to_string(), "VRRP checksum mismatch: got 0x1234, computed 0xabcd");
    let error = PacketError::Length { len: 13, expected: 12, count: 1 };
    assert_eq!(error.to_string(), "VRRP message is 13 bytes, but 1 addresses make it 12");
}

/// A fixed-seed xorshift64, so that the robustness tests are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What every decode that succeeds must satisfy: the advert encodes, and that decodes the same.
fn check_reencodes(msg: &[u8], src: IpAddr, dst: IpAddr) {
    if let Ok(advert) = Advert::decode(msg, src, dst) {
        let again = advert.encode(src, dst).unwrap();
        assert_eq!(Advert::decode(&again, src, dst), Ok(advert));
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let endpoints = [(SRC4, DST4), (SRC6, DST6), (SRC4, DST6)];
    for _ in 0..20_000 {
        let len = rng.below(80);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Aim half of them at the interesting cases: a valid version and type.
        if len > 0 && rng.below(2) == 0 {
            bytes[0] = [0x21, 0x31][rng.below(2)];
        }
        let _ = parse_ipv4(&bytes);
        for (src, dst) in endpoints {
            check_reencodes(&bytes, src, dst);
        }
    }
}

#[test]
fn mutated_valid_messages_never_panic() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let vectors = hand_vectors();
    let mut decoded = 0;
    for _ in 0..20_000 {
        let (bytes, src, dst, _) = &vectors[rng.below(vectors.len())];
        let original = hex(bytes);
        let mut msg = original.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(msg.len());
            msg[at] = rng.next() as u8;
        }
        // Repair the checksum half of the time, to get past it to the fields behind it.
        if rng.below(2) == 0 && msg[0] >> 4 == original[0] >> 4 {
            fix_checksum(&mut msg, *src, *dst);
        }
        decoded += usize::from(Advert::decode(&msg, *src, *dst).is_ok());
        check_reencodes(&msg, *src, *dst);
    }
    assert!(decoded > 1000, "only {decoded} mutated messages decoded: the test reaches too little");
}
