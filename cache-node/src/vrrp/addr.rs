//! Interfaces and their addresses over rtnetlink: what the speaker sends from, and the virtual
//! addresses it adds on takeover and removes on release.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::{AddressMessageBuilder, Handle};

/// An interface as the speaker needs it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// Administratively up (IFF_UP) and operationally up (IFF_RUNNING).
    pub up: bool,
    /// In the kernel's order: a subnet's primary address comes before its secondaries.
    pub ipv4: Vec<Ipv4Addr>,
    /// The first link-local address that has passed duplicate address detection.
    pub ipv6_link_local: Option<Ipv6Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("netlink: {context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// A route netlink connection.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection and spawns its task on the current tokio runtime; the task ends
    /// when the `Netlink` is dropped.
    pub fn new() -> io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub async fn interface(&self, name: &str) -> Result<Interface, NetError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        let link = match links.try_next().await {
            Ok(Some(link)) => link,
            Ok(None) => return Err(NetError::NoInterface(name.to_string())),
            Err(e) if errno(&e) == Some(libc::ENODEV) => return Err(NetError::NoInterface(name.to_string())),
            Err(source) => return Err(NetError::Netlink { context: format!("reading interface {name}"), source }),
        };
        let flags = link.header.flags;
        let mut interface = Interface {
            index: link.header.index,
            name: name.to_string(),
            mac: None,
            up: flags.contains(LinkFlags::Up | LinkFlags::Running),
            ipv4: Vec::new(),
            ipv6_link_local: None,
        };
        for attribute in &link.attributes {
            if let LinkAttribute::Address(mac) = attribute {
                interface.mac = <[u8; 6]>::try_from(mac.as_slice()).ok();
            }
        }
        for message in self.addresses(interface.index).await? {
            match local_address(&message) {
                Some(IpAddr::V4(ip)) => interface.ipv4.push(ip),
                Some(IpAddr::V6(ip)) if ip.is_unicast_link_local() && interface.ipv6_link_local.is_none() => {
                    let unusable = AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed;
                    if !message.header.flags.intersects(unusable) {
                        interface.ipv6_link_local = Some(ip);
                    }
                }
                _ => {}
            }
        }
        Ok(interface)
    }

    /// Adds `addr/prefix` to the interface; already present is fine (idempotent). IPv6
    /// addresses are added with IFA_F_NODAD, as keepalived does: with duplicate address
    /// detection a VIP would stay tentative, unusable, for about a second after takeover, and
    /// the backup that just gave it up may still answer for it.
    pub async fn add_address(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<(), NetError> {
        let mut request = self.handle.address().add(ifindex, addr, prefix);
        if addr.is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            result => result.map_err(|source| NetError::Netlink {
                context: format!("adding {addr}/{prefix} to interface {ifindex}"),
                source,
            }),
        }
    }

    /// Removes `addr/prefix` from the interface; absent is fine (idempotent).
    pub async fn del_address(&self, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<(), NetError> {
        let message = match addr {
            IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new().index(ifindex).address(ip, prefix).build(),
            IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new().index(ifindex).address(ip, prefix).build(),
        };
        match self.handle.address().del(message).execute().await {
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
            result => result.map_err(|source| NetError::Netlink {
                context: format!("removing {addr}/{prefix} from interface {ifindex}"),
                source,
            }),
        }
    }

    pub async fn has_address(&self, ifindex: u32, addr: IpAddr) -> Result<bool, NetError> {
        let addresses = self.addresses(ifindex).await?;
        Ok(addresses.iter().any(|message| local_address(message) == Some(addr)))
    }

    /// The interface's addresses, both families.
    async fn addresses(&self, ifindex: u32) -> Result<Vec<AddressMessage>, NetError> {
        let request = self.handle.address().get().set_link_index_filter(ifindex);
        request.execute().try_collect().await.map_err(|source| NetError::Netlink {
            context: format!("listing the addresses of interface {ifindex}"),
            source,
        })
    }
}

/// The address itself: IFA_LOCAL when present (always for IPv4, and IPv6 point-to-point, where
/// IFA_ADDRESS is the peer's), else IFA_ADDRESS.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address
}

/// The errno of a netlink error reply.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(-message.raw_code()),
        _ => None,
    }
}
