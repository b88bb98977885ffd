//! Who is master: the pure rules, so that both ends of a link reach the same answer.

use super::codec::Role;

/// One side of a link, as it announces itself in `Sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    pub role: Role,
    pub term: u64,
    pub node_id: u64,
}

/// The role `local` takes after meeting `remote`.
///
/// A master stays master when its peer is not one: this is repcached's rule, and what makes a
/// restarted ex-master (which starts with term 0) rejoin as a slave instead of taking the role
/// back. When both are masters (a simultaneous start, a healed partition), the one with the
/// higher term keeps the role (it took over more recently and has been serving as master),
/// and node ids break ties. When neither is master, the one that was asked to accept is
/// promoted... which never happens in practice: only masters listen.
pub fn after_meeting(local: Side, remote: Side, local_accepted: bool) -> Role {
    match (local.role == Role::Master, remote.role == Role::Master) {
        (true, false) => Role::Master,
        (false, true) => Role::Slave,
        (true, true) => {
            if (local.term, local.node_id) > (remote.term, remote.node_id) {
                Role::Master
            } else {
                Role::Slave
            }
        }
        (false, false) => {
            if local_accepted {
                Role::Master
            } else {
                Role::Slave
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(role: Role, term: u64, node_id: u64) -> Side {
        Side { role, term, node_id }
    }

    #[test]
    fn a_joiner_becomes_slave_of_the_master() {
        let master = side(Role::Master, 0, 1);
        let joiner = side(Role::Starting, 0, 2);
        assert_eq!(after_meeting(master, joiner, true), Role::Master);
        assert_eq!(after_meeting(joiner, master, false), Role::Slave);
    }

    #[test]
    fn no_preemption_when_both_are_masters() {
        // The promoted slave (term 1) meets the restarted ex-master (term 0) started as master.
        let promoted = side(Role::Master, 1, 1);
        let restarted = side(Role::Master, 0, 9);
        assert_eq!(after_meeting(promoted, restarted, false), Role::Master);
        assert_eq!(after_meeting(restarted, promoted, true), Role::Slave);
    }

    #[test]
    fn equal_terms_break_ties_the_same_way_on_both_sides() {
        let a = side(Role::Master, 2, 5);
        let b = side(Role::Master, 2, 7);
        assert_eq!(after_meeting(a, b, true), Role::Slave);
        assert_eq!(after_meeting(b, a, false), Role::Master);
    }
}
