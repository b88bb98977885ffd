//! Raw VRRP sockets (IP protocol 112) on one interface: bytes in, bytes out, with the addresses
//! and TTL that VRRP validates. No VRRP semantics here.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, recv, recvmsg, sendmsg, setsockopt, sockopt,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::packet::{GROUP_V4, GROUP_V6, IPPROTO_VRRP, parse_ipv4};

/// RFC 5798 §5.1.1.3: sent with TTL / hop limit 255; receivers discard anything else.
const TTL: u32 = 255;
/// IP precedence "internetwork control", the TOS keepalived sends adverts with.
const IPTOS_PREC_INTERNETCONTROL: u32 = 0xc0;
/// More than any VRRP message (255 addresses) and any jumbo frame: nothing is truncated.
const RECV_BUFFER: usize = 65536;

/// A raw VRRP socket bound to one interface, joined to the VRRP group there.
pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
    src: IpAddr,
}

/// One datagram as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit as received.
    pub ttl: u8,
    /// The VRRP message (IP header stripped).
    pub payload: Vec<u8>,
}

impl VrrpSocket {
    /// Opens a raw socket for `src`'s family bound to interface `ifname` (SO_BINDTODEVICE),
    /// joined to 224.0.0.18 / ff02::12 on it, multicast TTL / hop limit 255, multicast loop off
    /// (we must not hear ourselves). Every send carries IP_PKTINFO / IPV6_PKTINFO with `src`
    /// (the interface's primary IPv4 or link-local IPv6 address): the VRRPv3 checksum covers
    /// the source address, so the kernel must not choose another. The socket is not bound to
    /// `src` because a bound raw socket only receives datagrams addressed to it, not the
    /// group's. Must be called within a tokio runtime.
    pub fn open(ifname: &str, ifindex: u32, src: IpAddr) -> io::Result<VrrpSocket> {
        let domain = if src.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
        let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(i32::from(IPPROTO_VRRP))))?;
        socket.set_nonblocking(true)?;
        // Only this interface's adverts: the same VRID may be in use on another LAN.
        socket.bind_device(Some(ifname.as_bytes()))?;
        match src {
            IpAddr::V4(_) => {
                socket.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))?;
                socket.set_multicast_ttl_v4(TTL)?;
                socket.set_multicast_loop_v4(false)?;
                socket.set_tos_v4(IPTOS_PREC_INTERNETCONTROL)?;
            }
            IpAddr::V6(_) => {
                socket.join_multicast_v6(&GROUP_V6, ifindex)?;
                socket.set_multicast_if_v6(ifindex)?;
                socket.set_multicast_hops_v6(TTL)?;
                socket.set_multicast_loop_v6(false)?;
                // IPv6 raw sockets do not deliver the IP header: the hop limit and the
                // destination come as control messages.
                socket.set_recv_hoplimit_v6(true)?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
            }
        }
        // SAFETY: the Socket owns its descriptor, open until the AsyncFd drops it.
        let fd = unsafe { AsyncFd::register(socket)? };
        Ok(VrrpSocket { fd, ifindex, src })
    }

    /// Receives the next datagram. A malformed one is an error of kind `InvalidData`.
    pub async fn recv(&self) -> io::Result<Received> {
        let mut buf = vec![0u8; RECV_BUFFER];
        match self.src {
            IpAddr::V4(_) => {
                let n = self
                    .fd
                    .async_io(Interest::READABLE, |s| Ok(recv(s.as_raw_fd(), &mut buf, MsgFlags::empty())?))
                    .await?;
                let (header, payload) = parse_ipv4(&buf[..n]).map_err(|e| invalid(e.to_string()))?;
                Ok(Received {
                    src: header.src.into(),
                    dst: header.dst.into(),
                    ttl: header.ttl,
                    payload: payload.to_vec(),
                })
            }
            IpAddr::V6(_) => self.fd.async_io(Interest::READABLE, |s| recv_v6(s, &mut buf)).await,
        }
    }

    /// Sends `payload` to the VRRP group from `src`.
    pub async fn send(&self, payload: &[u8]) -> io::Result<()> {
        let iov = [IoSlice::new(payload)];
        let sent = match self.src {
            IpAddr::V4(src) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.ifindex as libc::c_int,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(src).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let group = SockaddrIn::from(SocketAddrV4::new(GROUP_V4, 0));
                let cmsg = [ControlMessage::Ipv4PacketInfo(&info)];
                self.fd
                    .async_io(Interest::WRITABLE, |s| {
                        Ok(sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&group))?)
                    })
                    .await?
            }
            IpAddr::V6(src) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr { s6_addr: src.octets() },
                    ipi6_ifindex: self.ifindex,
                };
                let group = SockaddrIn6::from(SocketAddrV6::new(GROUP_V6, 0, 0, self.ifindex));
                let cmsg = [ControlMessage::Ipv6PacketInfo(&info)];
                self.fd
                    .async_io(Interest::WRITABLE, |s| {
                        Ok(sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&group))?)
                    })
                    .await?
            }
        };
        if sent != payload.len() {
            return Err(io::Error::other(format!("sent {sent} of {} bytes", payload.len())));
        }
        Ok(())
    }
}

/// One `recvmsg` on an IPv6 raw socket: the source from the address, the destination and the
/// hop limit from the control messages that `open` asked for.
fn recv_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg_buf = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg_buf), MsgFlags::empty())?;
    let (mut dst, mut ttl) = (None, None);
    for cmsg in msg.cmsgs()? {
        match cmsg {
            ControlMessageOwned::Ipv6PacketInfo(info) => dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
            ControlMessageOwned::Ipv6HopLimit(hops) => ttl = u8::try_from(hops).ok(),
            _ => {}
        }
    }
    let src = msg.address.map(|a| a.ip());
    let n = msg.bytes;
    match (src, dst, ttl) {
        (Some(src), Some(dst), Some(ttl)) => {
            Ok(Received { src: src.into(), dst: dst.into(), ttl, payload: buf[..n].to_vec() })
        }
        _ => Err(invalid("IPv6 datagram without its source, IPV6_PKTINFO or IPV6_HOPLIMIT")),
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}
