//! Takeover announcements: a gratuitous ARP per IPv4 VIP and an unsolicited neighbour
//! advertisement per IPv6 VIP, so that the LAN's neighbour caches move to the new master.
//! The frames are what keepalived sends.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::num::NonZeroU32;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

const BROADCAST: [u8; 6] = [0xff; 6];
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARPHRD_ETHER: u16 = 1;
const ARPOP_REQUEST: u16 = 1;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// RFC 4861 §7.1.2: receivers drop neighbour discovery messages with any other hop limit.
const NDISC_HOP_LIMIT: u32 = 255;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Sends one gratuitous ARP (an ARP request, sender = target = `ip`, from `mac`, to broadcast
/// — what keepalived sends) on the interface, via an AF_PACKET socket.
pub fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    // Protocol 0: a send-only packet socket, which never queues received frames.
    let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
    let frame = arp_frame(mac, ip);
    let sent = socket.send_to(&frame, &link_address(ifindex, ETH_P_ARP, BROADCAST)?)?;
    check_sent(sent, frame.len())
}

/// Sends one unsolicited neighbour advertisement for `ip` (to ff02::1, override flag set,
/// target link-layer address option = `mac`, hop limit 255), via an ICMPv6 raw socket bound to
/// the interface. Its source is `ip` itself, as keepalived's, so `ip` must already be on the
/// interface and not tentative (see `Netlink::add_address`). The kernel fills in the ICMPv6
/// checksum: Linux always does for IPPROTO_ICMPV6 raw sockets (RFC 3542 §3.1).
pub fn unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device_by_index_v6(NonZeroU32::new(ifindex))?;
    socket.set_multicast_if_v6(ifindex)?;
    socket.set_multicast_hops_v6(NDISC_HOP_LIMIT)?;
    socket.set_multicast_loop_v6(false)?;
    let scope = if ip.is_unicast_link_local() { ifindex } else { 0 };
    socket.bind(&SocketAddrV6::new(ip, 0, 0, scope).into())?;
    let message = na_message(mac, ip);
    let sent = socket.send_to(&message, &SocketAddrV6::new(ALL_NODES, 0, 0, ifindex).into())?;
    check_sent(sent, message.len())
}

/// An Ethernet frame with an ARP request announcing that `ip` is at `mac`.
fn arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    frame[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    // keepalived sets the target hardware address to broadcast too.
    frame[32..38].copy_from_slice(&BROADCAST);
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// The ICMPv6 neighbour advertisement for `ip` at `mac`, checksum left zero for the kernel.
fn na_message(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut message = [0u8; 32];
    message[0] = ND_NEIGHBOR_ADVERT;
    message[4] = ND_NA_FLAG_OVERRIDE;
    message[8..24].copy_from_slice(&ip.octets());
    message[24] = ND_OPT_TARGET_LINKADDR;
    // Option length in units of 8 bytes.
    message[25] = 1;
    message[26..32].copy_from_slice(&mac);
    message
}

/// A packet socket's destination: the interface, the EtherType and the hardware address.
fn link_address(ifindex: u32, protocol: u16, dst: [u8; 6]) -> io::Result<SockAddr> {
    let ifindex = i32::try_from(ifindex).map_err(|_| io::Error::other(format!("bad interface index {ifindex}")))?;
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is a sockaddr type of this platform, smaller than sockaddr_storage.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = protocol.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&dst);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an AF_PACKET sockaddr_ll of that length.
    Ok(unsafe { SockAddr::new(storage, len) })
}

fn check_sent(sent: usize, len: usize) -> io::Result<()> {
    if sent != len {
        return Err(io::Error::other(format!("sent {sent} of {len} bytes")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn arp_frame_is_a_broadcast_request_for_the_address_itself() {
        let frame = arp_frame(MAC, Ipv4Addr::new(192, 0, 2, 10));
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // Ethernet destination: broadcast
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // Ethernet source
            0x08, 0x06,                         // EtherType ARP
            0x00, 0x01, 0x08, 0x00, 6, 4,       // Ethernet / IPv4, address lengths
            0x00, 0x01,                         // request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // sender hardware address
            192, 0, 2, 10,                      // sender IP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // target hardware address
            192, 0, 2, 10,                      // target IP = sender IP
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn na_message_overrides_with_the_target_link_layer_address() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let message = na_message(MAC, ip);
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            136, 0, 0, 0,                       // type, code, checksum (the kernel's)
            0x20, 0, 0, 0,                      // flags: override only
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, // target
            2, 1,                               // target link-layer address, 8 bytes
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30,
        ];
        assert_eq!(message, expected);
    }
}
