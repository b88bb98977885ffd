//! `status`: a pair's summary, as a pure function of the CachePair and its Events, rendered as
//! text or serialized as JSON or YAML.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use operator::crd::{CachePair, MemberStatus};
use serde::Serialize;

/// How many Events the summary shows, newest last.
pub const EVENTS_SHOWN: usize = 10;

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub name: String,
    pub namespace: String,
    pub phase: Option<String>,
    pub master: Option<String>,
    pub slave: Option<String>,
    pub lag_bytes: Option<u64>,
    pub members: Vec<MemberStatus>,
    pub failover_count: u32,
    pub last_failover_time: Option<Timestamp>,
    /// `spec.switchover` and whether `status.switchover` says it was carried out.
    pub switchover: Option<Request>,
    pub reseed: Option<Request>,
    /// `spec.fenced`.
    pub fenced: Vec<String>,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub token: String,
    /// The member, for a re-seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub done: bool,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: Timestamp,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    /// The object it is about, when it is not the pair (a member's pod).
    pub object: String,
    pub message: String,
    pub count: i32,
    pub last_seen: Option<Timestamp>,
}

/// The summary of `cp`; `events` are the Events about it (any order).
pub fn summary(cp: &CachePair, events: &[Event]) -> Summary {
    let status = cp.status.clone().unwrap_or_default();
    let spec = &cp.spec;
    let mut rows: Vec<EventRow> = events
        .iter()
        .map(|e| EventRow {
            type_: e.type_.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            object: e.involved_object.name.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.or_else(|| e.series.as_ref().and_then(|s| s.count)).unwrap_or(1),
            last_seen: last_seen(e),
        })
        .collect();
    rows.sort_by_key(|r| r.last_seen);
    let skip = rows.len().saturating_sub(EVENTS_SHOWN);
    Summary {
        name: cp.metadata.name.clone().unwrap_or_default(),
        namespace: cp.metadata.namespace.clone().unwrap_or_default(),
        phase: status.phase.map(|p| format!("{p:?}")),
        master: status.master,
        slave: status.slave,
        lag_bytes: status.lag_bytes,
        members: status.members,
        failover_count: status.failover_count,
        last_failover_time: status.last_failover_time.map(|t| t.0),
        switchover: spec.switchover.as_ref().map(|token| Request {
            token: token.clone(),
            member: None,
            done: status.switchover.as_ref() == Some(token),
        }),
        reseed: spec.reseed.as_ref().map(|r| Request {
            token: r.token.clone(),
            member: Some(
                serde_json::to_value(r.member).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            ),
            done: status.reseed.as_ref() == Some(&r.token),
        }),
        fenced: spec
            .fenced
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok().and_then(|v| v.as_str().map(String::from)))
            .collect(),
        conditions: status
            .conditions
            .iter()
            .map(|c| ConditionRow {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                since: c.last_transition_time.0,
            })
            .collect(),
        events: rows.into_iter().skip(skip).collect(),
    }
}

/// When an Event was last seen: a core/v1 Event's `lastTimestamp`, an events.k8s.io one's series
/// or `eventTime`, or its creation.
fn last_seen(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(since).max(SignedDuration::ZERO).as_secs();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), ToString::to_string)
}

/// Columns padded to their widest cell; the last column is not padded.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// The summary as text, ages counted to `now`.
pub fn render(s: &Summary, now: Timestamp) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "CachePair {}/{}: {}", s.namespace, s.name, s.phase.as_deref().unwrap_or("(no status yet)"));
    let _ = writeln!(out, "Master:     {}", opt(&s.master));
    let _ = writeln!(out, "Slave:      {}", opt(&s.slave));
    let _ = writeln!(out, "Lag:        {}", s.lag_bytes.map_or_else(|| "-".into(), |b| format!("{b} bytes")));
    let last = s.last_failover_time.map_or_else(|| "never".into(), |t| format!("{} ago ({t})", age(t, now)));
    let _ = writeln!(out, "Failovers:  {} (last: {last})", s.failover_count);
    if let Some(r) = &s.switchover {
        let _ = writeln!(out, "Switchover: {} ({})", r.token, if r.done { "done" } else { "pending" });
    }
    if let Some(r) = &s.reseed {
        let member = r.member.as_deref().unwrap_or("?");
        let _ = writeln!(out, "Reseed:     member {member}, {} ({})", r.token, if r.done { "done" } else { "pending" });
    }
    if !s.fenced.is_empty() {
        let _ = writeln!(out, "Fenced:     {} (spec.fenced)", s.fenced.join(", "));
    }

    out.push_str("\nMembers:\n");
    let mut rows = vec![["NAME", "ROLE", "NODE", "OFFSET", "LAG", "FENCED"].map(String::from).to_vec()];
    for m in &s.members {
        rows.push(vec![
            m.name.clone(),
            m.role.clone(),
            opt(&m.node),
            opt(&m.offset_bytes),
            opt(&m.lag_bytes),
            if m.fenced { "yes".into() } else { "no".into() },
        ]);
    }
    table(&mut out, &rows);

    out.push_str("\nConditions:\n");
    let mut rows = vec![["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"].map(String::from).to_vec()];
    for c in &s.conditions {
        rows.push(vec![c.type_.clone(), c.status.clone(), c.reason.clone(), age(c.since, now), c.message.clone()]);
    }
    table(&mut out, &rows);

    out.push_str("\nEvents:\n");
    if s.events.is_empty() {
        out.push_str("<none>\n");
    } else {
        let mut rows = vec![["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"].map(String::from).to_vec()];
        for e in &s.events {
            let seen = e.last_seen.map_or_else(|| "-".into(), |t| age(t, now));
            let seen = if e.count > 1 { format!("{seen} (x{})", e.count) } else { seen };
            rows.push(vec![seen, e.type_.clone(), e.reason.clone(), e.object.clone(), e.message.clone()]);
        }
        table(&mut out, &rows);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (CachePair, Vec<Event>) {
        let cp = serde_json::from_str(include_str!("../tests/fixtures/pair.json")).expect("the fixture is a CachePair");
        let events = serde_json::from_str(include_str!("../tests/fixtures/events.json")).expect("Events");
        (cp, events)
    }

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_summary_holds_roles_lag_failovers_requests_and_conditions() {
        let (cp, events) = fixture();
        let s = summary(&cp, &events);
        assert_eq!(
            (s.phase.as_deref(), s.master.as_deref(), s.slave.as_deref()),
            (Some("Ready"), Some("demo-b"), Some("demo-a"))
        );
        assert_eq!((s.failover_count, s.lag_bytes), (1, Some(96)));
        assert_eq!(s.switchover, Some(Request { token: "t1".into(), member: None, done: true }));
        assert_eq!(s.reseed, Some(Request { token: "r1".into(), member: Some("a".into()), done: false }));
        assert_eq!(s.fenced, ["a"]);
        assert_eq!(
            s.events.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
            ["Failover", "Reseeded", "Switchover"]
        );
        assert_eq!(s.events[1].object, "demo");
    }

    #[test]
    fn the_text_shows_members_conditions_and_events_with_their_ages() {
        let (cp, events) = fixture();
        let text = render(&summary(&cp, &events), now());
        let expected = "\
CachePair shop/demo: Ready
Master:     demo-b
Slave:      demo-a
Lag:        96 bytes
Failovers:  1 (last: 2h ago (2026-03-01T10:00:00Z))
Switchover: t1 (done)
Reseed:     member a, r1 (pending)
Fenced:     a (spec.fenced)

Members:
NAME    ROLE    NODE    OFFSET  LAG  FENCED
demo-a  slave   node-1  4000    0    yes
demo-b  master  node-2  4096    96   no

Conditions:
TYPE         STATUS  REASON         AGE  MESSAGE
Ready        True    MasterServing  5m   the slave follows the master
Replicating  True    InSync         30s  the slave follows the master

Events:
LAST SEEN  TYPE     REASON      OBJECT  MESSAGE
2h         Warning  Failover    demo    demo-b took over as master from demo-a
119m       Normal   Reseeded    demo    demo-a re-created as a slave of the master at 10.0.0.2:11212
10s (x2)   Normal   Switchover  demo    demo-b is master now (requested); demo-a: handed over
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn json_output_is_the_summary() {
        let (cp, events) = fixture();
        let v = serde_json::to_value(summary(&cp, &events)).unwrap();
        assert_eq!(v["members"][0]["offsetBytes"], 4000);
        assert_eq!(v["conditions"][0]["type"], "Ready");
        assert_eq!(v["reseed"]["done"], false);
    }

    #[test]
    fn ages_read_as_kubectls() {
        let now = now();
        let ago = |s: i64| now - SignedDuration::from_secs(s);
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(300), now), "5m");
        assert_eq!(age(ago(3 * 3600), now), "3h");
        assert_eq!(age(ago(5 * 86400), now), "5d");
        assert_eq!(age(now + SignedDuration::from_secs(5), now), "0s", "clock skew is no negative age");
    }

    #[test]
    fn a_pair_without_status_still_renders() {
        let (mut cp, _) = fixture();
        cp.status = None;
        let text = render(&summary(&cp, &[]), now());
        assert!(text.starts_with("CachePair shop/demo: (no status yet)\nMaster:     -\n"), "{text}");
        assert!(text.ends_with("Events:\n<none>\n"), "{text}");
    }
}
