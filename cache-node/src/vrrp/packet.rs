//! VRRP advertisements on the wire: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798), as keepalived
//! 2.2.7 sends and accepts them. No I/O.
//!
//! ```text
//! VRRPv2 (IPv4 only)                      VRRPv3 (IPv4 or IPv6)
//! 0: version 2 | type 1, vrid              0: version 3 | type 1, vrid
//! 2: priority, count of addresses          2: priority, count of addresses
//! 4: auth type, advert interval (s)        4: 4 reserved bits | max advert interval (cs, 12 bits)
//! 6: checksum                              6: checksum
//! 8: count × 4-byte IPv4 address           8: count × 4-byte IPv4 or 16-byte IPv6 address
//!    8 bytes of auth data
//! ```
//!
//! - VRRPv2 always carries the 8 bytes of auth data: keepalived sends them as zeros with auth
//!   type 0, and counts them in the length it expects whatever the auth type.
//! - The VRRPv2 checksum covers the message alone; the VRRPv3 one also covers the IP
//!   pseudo-header (RFC 5798 §5.2.8): source, destination, protocol 112 and the message length.
//! - A message must be exactly as long as its count of addresses says: keepalived drops a
//!   longer one ("vrrp packet too long"), so [`Advert::decode`] refuses trailing bytes too.
//!   [`parse_ipv4`] already cuts off what lies beyond the IP total length (link-layer padding).
//! - Reserved bits (VRRPv3) and the auth data of auth type 0 (VRRPv2) are ignored on reception
//!   and sent as zeros, as the RFCs say, so they do not survive a decode/encode round trip.
//! - The codec checks the wire format only: whether an interval of 0, priority 0 (a master
//!   resigning) or 255 (the address owner), or an advert with no address is acceptable is for
//!   the state machine to decide.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use internet_checksum::Checksum;

pub const IPPROTO_VRRP: u8 = 112;
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// The fixed part before the addresses, the same size in both versions.
const HEADER_LEN: usize = 8;
/// VRRPv2's authentication data, after the addresses.
const AUTH_LEN: usize = 8;
/// Where the checksum sits in the fixed part.
const CHECKSUM_AT: usize = 6;
const TYPE_ADVERTISEMENT: u8 = 1;
const AUTH_NONE: u8 = 0;
const AUTH_PASSWORD: u8 = 1;
/// VRRPv2 carries whole seconds in one byte.
const V2_MAX_INTERVAL_CS: u16 = 255 * 100;
/// VRRPv3 carries centiseconds in 12 bits.
const V3_INTERVAL_MASK: u16 = 0x0fff;
const IPV4_MIN_HEADER: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds. VRRPv2 carries whole seconds, so for V2 this is a
    /// multiple of 100 (encode rejects others).
    pub interval_cs: u16,
    /// The virtual addresses, all of one family (IPv6 only with V3).
    pub addresses: Vec<IpAddr>,
    /// VRRPv2 simple password (auth type 1, "PASS" in keepalived), up to 8 bytes, zero-padded on
    /// the wire; None = auth type 0. Must be None for V3. Decoding strips the zero padding, so a
    /// password cannot end in a zero byte (encode rejects one).
    pub password: Option<Vec<u8>>,
}

impl Advert {
    /// The VRRP message (no IP header). `src`/`dst` are the IP source and destination, needed
    /// for the VRRPv3 pseudo-header checksum.
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, PacketError> {
        let ends = Endpoints::new(self.version, src, dst)?;
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| PacketError::TooManyAddresses { count: self.addresses.len() })?;
        let (auth, word) = match self.version {
            Version::V2 => {
                if !self.interval_cs.is_multiple_of(100) || self.interval_cs > V2_MAX_INTERVAL_CS {
                    return Err(PacketError::V2Interval { interval_cs: self.interval_cs });
                }
                let (auth_type, auth) = match &self.password {
                    None => (AUTH_NONE, [0; AUTH_LEN]),
                    Some(password) => (AUTH_PASSWORD, pad_password(password)?),
                };
                // At most 25500 / 100 = 255: fits the byte.
                (Some(auth), [auth_type, (self.interval_cs / 100) as u8])
            }
            Version::V3 => {
                if self.password.is_some() {
                    return Err(PacketError::V3Password);
                }
                if self.interval_cs > V3_INTERVAL_MASK {
                    return Err(PacketError::V3Interval { interval_cs: self.interval_cs });
                }
                (None, self.interval_cs.to_be_bytes())
            }
        };

        let mut msg = Vec::with_capacity(ends.message_len(self.version, count));
        msg.extend_from_slice(&[self.version.number() << 4 | TYPE_ADVERTISEMENT, self.vrid, self.priority, count]);
        msg.extend_from_slice(&word);
        msg.extend_from_slice(&[0, 0]);
        for &address in &self.addresses {
            match (address, ends) {
                (IpAddr::V4(a), Endpoints::V4(..)) => msg.extend_from_slice(&a.octets()),
                (IpAddr::V6(a), Endpoints::V6(..)) => msg.extend_from_slice(&a.octets()),
                _ => return Err(PacketError::AddressFamily { address, src }),
            }
        }
        if let Some(auth) = auth {
            msg.extend_from_slice(&auth);
        }
        let sum = ends.checksum(self.version, &msg);
        msg[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum);
        Ok(msg)
    }

    /// Parses and validates a VRRP message (no IP header) received from `src` for `dst`: version
    /// 2 or 3, type advertisement, a length that is exactly what the count of addresses implies,
    /// the checksum, VRRPv2 auth type 0 or 1, and (implied) addresses of `src`'s family.
    pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, PacketError> {
        let Some(&[version_type, vrid, priority, count, word0, word1, ..]) = msg.first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::Truncated { len: msg.len() });
        };
        let version = match version_type >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            version => return Err(PacketError::Version { version }),
        };
        if version_type & 0x0f != TYPE_ADVERTISEMENT {
            return Err(PacketError::NotAdvertisement { kind: version_type & 0x0f });
        }
        let ends = Endpoints::new(version, src, dst)?;
        let expected = ends.message_len(version, count);
        if msg.len() != expected {
            return Err(PacketError::Length { len: msg.len(), expected, count });
        }
        // A correct checksum makes the sum over everything, checksum included, come out as zero
        // (keepalived's test); this also accepts 0xffff for 0x0000, one's complement's other zero.
        if ends.checksum_with(version, msg) != [0, 0] {
            let got = u16::from_be_bytes([msg[CHECKSUM_AT], msg[CHECKSUM_AT + 1]]);
            let computed = u16::from_be_bytes(ends.checksum(version, msg));
            return Err(PacketError::Checksum { got, computed });
        }

        let addresses_end = HEADER_LEN + ends.addresses_len(count);
        let body = &msg[HEADER_LEN..addresses_end];
        let addresses = match ends {
            Endpoints::V4(..) => body.as_chunks::<4>().0.iter().map(|&a| IpAddr::from(a)).collect(),
            Endpoints::V6(..) => body.as_chunks::<16>().0.iter().map(|&a| IpAddr::from(a)).collect(),
        };
        let (interval_cs, password) = match version {
            Version::V2 => {
                let password = match word0 {
                    AUTH_NONE => None,
                    AUTH_PASSWORD => Some(strip_padding(&msg[addresses_end..]).to_vec()),
                    auth_type => return Err(PacketError::AuthType { auth_type }),
                };
                (u16::from(word1) * 100, password)
            }
            // The reserved bits are ignored on reception (RFC 5798 §5.2.6).
            Version::V3 => (u16::from_be_bytes([word0, word1]) & V3_INTERVAL_MASK, None),
        };
        Ok(Advert { version, vrid, priority, interval_cs, addresses, password })
    }
}

/// The fields of an IPv4 header a VRRP receiver checks (raw IPv4 sockets deliver the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
}

/// Splits a raw IPv4 datagram into its header and payload, honouring the header length and the
/// total length (bytes beyond it are link-layer padding and dropped). The header checksum is
/// not checked: the kernel has done so before a raw socket sees the datagram.
pub fn parse_ipv4(datagram: &[u8]) -> Result<(Ipv4Header, &[u8]), PacketError> {
    let Some(fixed) = datagram.first_chunk::<IPV4_MIN_HEADER>() else {
        return Err(PacketError::Ipv4Truncated { len: datagram.len() });
    };
    if fixed[0] >> 4 != 4 {
        return Err(PacketError::NotIpv4 { version: fixed[0] >> 4 });
    }
    let ihl = fixed[0] & 0x0f;
    let header_len = usize::from(ihl) * 4;
    if header_len < IPV4_MIN_HEADER {
        return Err(PacketError::Ipv4HeaderLength { ihl });
    }
    let total = u16::from_be_bytes([fixed[2], fixed[3]]);
    if usize::from(total) < header_len || usize::from(total) > datagram.len() {
        return Err(PacketError::Ipv4TotalLength { total, header_len, len: datagram.len() });
    }
    let header = Ipv4Header {
        src: Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]),
        dst: Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]),
        ttl: fixed[8],
        protocol: fixed[9],
    };
    Ok((header, &datagram[header_len..usize::from(total)]))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("IPv4 datagram of {len} bytes is shorter than the 20-byte minimum header")]
    Ipv4Truncated { len: usize },
    #[error("not an IPv4 datagram: IP version {version}")]
    NotIpv4 { version: u8 },
    #[error("IPv4 header length field {ihl} is below the minimum of 5 (20 bytes)")]
    Ipv4HeaderLength { ihl: u8 },
    #[error("IPv4 total length {total} does not fit a {header_len}-byte header and a {len}-byte datagram")]
    Ipv4TotalLength { total: u16, header_len: usize, len: usize },
    #[error("VRRP message of {len} bytes is shorter than the 8-byte fixed header")]
    Truncated { len: usize },
    #[error("unsupported VRRP version {version} (2 and 3 are supported)")]
    Version { version: u8 },
    #[error("VRRP packet type {kind} is not an advertisement (1)")]
    NotAdvertisement { kind: u8 },
    #[error("IP source {src} and destination {dst} are of different address families")]
    FamilyMismatch { src: IpAddr, dst: IpAddr },
    #[error("VRRPv2 runs over IPv4 only, but the IP source is {src}: use VRRPv3 for IPv6")]
    V2OverIpv6 { src: IpAddr },
    #[error("VRRP message is {len} bytes, but {count} addresses make it {expected}")]
    Length { len: usize, expected: usize, count: u8 },
    #[error("VRRP checksum mismatch: got {got:#06x}, computed {computed:#06x}")]
    Checksum { got: u16, computed: u16 },
    #[error("VRRPv2 auth type {auth_type} is not supported (0 none and 1 simple password are)")]
    AuthType { auth_type: u8 },
    #[error("{count} virtual addresses: a VRRP advertisement carries at most 255")]
    TooManyAddresses { count: usize },
    #[error("virtual address {address} is not of the family of the IP source {src}")]
    AddressFamily { address: IpAddr, src: IpAddr },
    #[error("VRRPv2 interval of {interval_cs} cs is not a whole number of seconds from 0 to 255")]
    V2Interval { interval_cs: u16 },
    #[error("VRRPv3 interval of {interval_cs} cs exceeds the 12-bit maximum of 4095")]
    V3Interval { interval_cs: u16 },
    #[error("VRRPv2 password of {len} bytes is longer than the 8 that fit")]
    PasswordTooLong { len: usize },
    #[error("VRRPv2 password ends in a zero byte, which the wire's zero padding cannot carry")]
    PasswordTrailingZero,
    #[error("VRRPv3 has no authentication: the password must be None")]
    V3Password,
}

/// The IP source and destination of a message, known to be of one family that the version
/// runs over.
#[derive(Debug, Clone, Copy)]
enum Endpoints {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Endpoints {
    fn new(version: Version, src: IpAddr, dst: IpAddr) -> Result<Endpoints, PacketError> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Ok(Endpoints::V4(s, d)),
            (IpAddr::V6(s), IpAddr::V6(d)) if version == Version::V3 => Ok(Endpoints::V6(s, d)),
            (IpAddr::V6(_), IpAddr::V6(_)) => Err(PacketError::V2OverIpv6 { src }),
            _ => Err(PacketError::FamilyMismatch { src, dst }),
        }
    }

    fn message_len(self, version: Version, count: u8) -> usize {
        let auth = if version == Version::V2 { AUTH_LEN } else { 0 };
        HEADER_LEN + self.addresses_len(count) + auth
    }

    fn addresses_len(self, count: u8) -> usize {
        let size = match self {
            Endpoints::V4(..) => 4,
            Endpoints::V6(..) => 16,
        };
        usize::from(count) * size
    }

    /// The checksum to put in `msg`: as if its checksum field were zero.
    fn checksum(self, version: Version, msg: &[u8]) -> [u8; 2] {
        let mut sum = self.pseudo_header(version, msg.len());
        sum.add_bytes(&msg[..CHECKSUM_AT]);
        sum.add_bytes(&msg[CHECKSUM_AT + 2..]);
        sum.checksum()
    }

    /// The checksum over `msg` as it is, checksum field included: zero when that field is right.
    fn checksum_with(self, version: Version, msg: &[u8]) -> [u8; 2] {
        let mut sum = self.pseudo_header(version, msg.len());
        sum.add_bytes(msg);
        sum.checksum()
    }

    /// A sum started with the VRRPv3 pseudo-header (RFC 5798 §5.2.8: for IPv4 as in RFC 768, for
    /// IPv6 as in RFC 8200 §8.1); VRRPv2 has none.
    fn pseudo_header(self, version: Version, len: usize) -> Checksum {
        let mut sum = Checksum::new();
        if version == Version::V2 {
            return sum;
        }
        // A message is at most 8 + 255 × 16 bytes, so the length fits both fields.
        match self {
            Endpoints::V4(src, dst) => {
                sum.add_bytes(&src.octets());
                sum.add_bytes(&dst.octets());
                sum.add_bytes(&[0, IPPROTO_VRRP]);
                sum.add_bytes(&(len as u16).to_be_bytes());
            }
            Endpoints::V6(src, dst) => {
                sum.add_bytes(&src.octets());
                sum.add_bytes(&dst.octets());
                sum.add_bytes(&(len as u32).to_be_bytes());
                sum.add_bytes(&[0, 0, 0, IPPROTO_VRRP]);
            }
        }
        sum
    }
}

/// The auth data for `password`: the password, zero-padded to 8 bytes.
fn pad_password(password: &[u8]) -> Result<[u8; AUTH_LEN], PacketError> {
    if password.len() > AUTH_LEN {
        return Err(PacketError::PasswordTooLong { len: password.len() });
    }
    if password.last() == Some(&0) {
        return Err(PacketError::PasswordTrailingZero);
    }
    let mut auth = [0; AUTH_LEN];
    auth[..password.len()].copy_from_slice(password);
    Ok(auth)
}

/// The password in received auth data: all of it up to the zero padding.
fn strip_padding(auth: &[u8]) -> &[u8] {
    let end = auth.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    &auth[..end]
}

#[cfg(test)]
mod tests;
