use std::sync::Arc;

use super::*;

const NOW: RelTime = 100;

fn store() -> Store {
    Store::new(Config::default())
}

fn set(s: &Store, key: &[u8], value: &[u8]) -> StoreOutcome {
    s.store(&StoreRequest::new(Mode::Set, key, value), NOW)
}

fn value(s: &Store, key: &[u8], now: RelTime) -> Option<Vec<u8>> {
    s.get(key, now, |it| it.value().to_vec())
}

#[test]
fn set_get_delete() {
    let s = store();
    assert_eq!(set(&s, b"k", b"v").status, StoreStatus::Stored);
    assert_eq!(value(&s, b"k", NOW).as_deref(), Some(&b"v"[..]));
    assert_eq!(s.delete(b"k", NOW, DeleteRequest::default()), DeleteStatus::Deleted);
    assert_eq!(s.delete(b"k", NOW, DeleteRequest::default()), DeleteStatus::NotFound);
    assert_eq!(value(&s, b"k", NOW), None);
    assert_eq!(s.used_bytes(), 0);
    let st = s.stats();
    assert_eq!((st.totals().get_hits, st.counters.get_misses, st.curr_items), (1, 1, 0));
}

#[test]
fn modes_follow_memcached() {
    let s = store();
    let add = |v: &[u8]| s.store(&StoreRequest::new(Mode::Add, b"k", v), NOW).status;
    assert_eq!(s.store(&StoreRequest::new(Mode::Replace, b"k", b"x"), NOW).status, StoreStatus::NotStored);
    assert_eq!(s.store(&StoreRequest::new(Mode::Append, b"k", b"x"), NOW).status, StoreStatus::NotStored);
    assert_eq!(add(b"a"), StoreStatus::Stored);
    assert_eq!(add(b"b"), StoreStatus::NotStored);
    s.store(&StoreRequest::new(Mode::Append, b"k", b"z"), NOW);
    s.store(&StoreRequest::new(Mode::Prepend, b"k", b"y"), NOW);
    assert_eq!(value(&s, b"k", NOW).as_deref(), Some(&b"yaz"[..]));
}

#[test]
fn cas_checks_and_renews() {
    let s = store();
    let first = set(&s, b"k", b"1").cas;
    let mut req = StoreRequest::new(Mode::Cas, b"k", b"2");
    req.cas = first + 100;
    assert_eq!(s.store(&req, NOW).status, StoreStatus::Exists);
    req.cas = first;
    let out = s.store(&req, NOW);
    assert_eq!(out.status, StoreStatus::Stored);
    assert!(out.cas > first);
    assert_eq!(s.store(&req, NOW).status, StoreStatus::Exists);
    req.key = b"missing";
    assert_eq!(s.store(&req, NOW).status, StoreStatus::NotFound);
}

#[test]
fn expiry_is_lazy_and_swept() {
    let s = store();
    let mut req = StoreRequest::new(Mode::Set, b"k", b"v");
    req.exptime = NOW + 2;
    s.store(&req, NOW);
    assert!(value(&s, b"k", NOW + 1).is_some());
    assert!(value(&s, b"k", NOW + 2).is_none());
    assert_eq!(s.stats().counters.get_expired, 1);

    s.store(&req, NOW);
    // One step sweeps a small store whole, however many shards it has.
    s.sweep(NOW + 5, 1000);
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.used_bytes(), 0);
    assert_eq!(s.stats().totals().crawler_reclaimed, 1);
}

/// memcached's t/issue_14.t: the memory of expired items is used again before memory grows.
#[test]
fn expired_items_make_room_for_new_ones() {
    let s = store();
    let value = vec![b'x'; 66560];
    let set_all = |prefix: &str, exptime: RelTime| {
        for i in 0..10 {
            let key = format!("{prefix}{i}");
            let mut req = StoreRequest::new(Mode::Set, key.as_bytes(), &value);
            req.exptime = exptime;
            assert_eq!(s.store(&req, NOW).status, StoreStatus::Stored);
        }
    };
    set_all("old", NOW + 2);
    let before = s.stats().bytes;
    s.sweep(NOW + 4, 4096);
    set_all("new", 0);
    assert_eq!(s.stats().bytes, before);
}

/// memcached's t/issue_22.t: items are counted in memcached's slab class for their size, and
/// evictions in the class of the evicted item.
#[test]
fn items_and_evictions_are_counted_per_slab_class() {
    let s = Store::new(Config { limit_bytes: 3 << 20, item_size_max: 1 << 20 });
    let value = vec![b'x'; 66560];
    for i in 0..100 {
        assert_eq!(set(&s, format!("key{i}").as_bytes(), &value).status, StoreStatus::Stored);
    }
    set(&s, b"small", b"v");
    let st = s.stats();
    let big = st.classes[31];
    assert!(big.evicted > 50 && big.evicted == st.totals().evicted, "{big:?}");
    assert_eq!(big.number + big.evicted, 100);
    // Keys key0..key99 are 4 or 5 bytes long.
    let sizes = memcached_item_size(4, 66560, 0) as u64..=memcached_item_size(5, 66560, 0) as u64;
    assert!(sizes.contains(&(big.mem_requested / big.number)), "{big:?}");
    assert_eq!(big.cmd_set, 100);
    assert_eq!((st.classes[1].number, st.classes[1].mem_requested, st.classes[1].chunks), (1, 65, 1));
    s.reset_stats();
    let st = s.stats();
    assert_eq!((st.classes[31].evicted, st.classes[31].cmd_set, st.classes[31].number), (0, 0, big.number));
}

#[test]
fn arith_wraps_floors_and_pads() {
    let s = store();
    set(&s, b"n", b"100");
    let decr = |d| s.arith(b"n", NOW, ArithRequest { incr: false, delta: d, cas: 0, vivify: None, touch: None });
    assert!(matches!(decr(95), ArithOutcome::Done { value: 5, .. }));
    assert_eq!(value(&s, b"n", NOW).as_deref(), Some(&b"5  "[..]));
    assert!(matches!(decr(10), ArithOutcome::Done { value: 0, .. }));
    set(&s, b"n", &u64::MAX.to_string().into_bytes());
    let incr = s.arith(b"n", NOW, ArithRequest { incr: true, delta: 2, cas: 0, vivify: None, touch: None });
    assert!(matches!(incr, ArithOutcome::Done { value: 1, .. }));
    set(&s, b"n", b"9");
    s.arith(b"n", NOW, ArithRequest { incr: true, delta: 1, cas: 0, vivify: None, touch: None });
    assert_eq!(value(&s, b"n", NOW).as_deref(), Some(&b"10"[..]));
    set(&s, b"t", b"text");
    assert_eq!(decr_key(&s, b"t"), ArithOutcome::NonNumeric);
    // memcached checks the CAS before parsing the number, but refuses empty values first.
    let with_cas = ArithRequest { incr: true, delta: 1, cas: 12345, vivify: None, touch: None };
    assert_eq!(s.arith(b"t", NOW, with_cas), ArithOutcome::Exists);
    set(&s, b"e", b"");
    assert_eq!(s.arith(b"e", NOW, with_cas), ArithOutcome::NonNumeric);
    assert_eq!(decr_key(&s, b"none"), ArithOutcome::NotFound);
}

#[test]
fn arith_checks_emptiness_before_cas() {
    let s = store();
    set(&s, b"e", b"");
    set(&s, b"t", b"text");
    let with_bad_cas =
        |key| s.arith(key, NOW, ArithRequest { incr: true, delta: 1, cas: u64::MAX, vivify: None, touch: None });
    assert_eq!(with_bad_cas(b"e"), ArithOutcome::NonNumeric);
    assert_eq!(with_bad_cas(b"t"), ArithOutcome::Exists);
}

fn decr_key(s: &Store, key: &[u8]) -> ArithOutcome {
    s.arith(key, NOW, ArithRequest { incr: false, delta: 1, cas: 0, vivify: None, touch: None })
}

#[test]
fn memory_limit_evicts_least_recently_used() {
    let s = Store::new(Config { limit_bytes: 1 << 20, item_size_max: 1 << 20 });
    let value = vec![b'x'; 1000];
    for i in 0..5000u32 {
        let key = format!("key{i}");
        // Keep key0 hot: it must survive the churn.
        assert!(s.get(b"key0", NOW, |_| ()).is_some() || i == 0);
        assert_eq!(set(&s, key.as_bytes(), &value).status, StoreStatus::Stored);
        assert!(s.used_bytes() <= 1 << 20);
    }
    let st = s.stats();
    assert!(st.totals().evicted > 3000);
    assert!(st.bytes as usize <= 1 << 20);
    assert_eq!(st.bytes as usize, s.used_bytes());
    assert!(s.get(b"key0", NOW, |_| ()).is_some());
}

#[test]
fn too_large_uses_memcached_arithmetic() {
    let s = store();
    // 48 header + key+1 + value+2 + 8 cas must fit in 1 MiB.
    let max_value = (1 << 20) - 48 - 2 - 2 - 8;
    assert!(!s.too_large(1, max_value, 0));
    assert!(s.too_large(1, max_value + 1, 0));
    assert!(s.too_large(1, max_value, 1));
}

#[test]
fn flush_all_spares_later_writes() {
    let (s, clock) = (store(), Clock::new());
    let now = clock.now();
    set(&s, b"old", b"v");
    s.flush_all(&clock, now, now);
    set(&s, b"new", b"v");
    assert!(value(&s, b"old", now).is_none());
    assert!(value(&s, b"new", now).is_some());
}

#[test]
fn a_delayed_flush_takes_effect_the_second_before_its_time() {
    let (s, clock) = (store(), Clock::new());
    let now = clock.now();
    set(&s, b"k", b"v");
    s.flush_all(&clock, now, now + 10);
    assert!(value(&s, b"k", now + 8).is_some());
    assert!(value(&s, b"k", now + 9).is_none());
    // Writes of the second before its time are flushed too, later ones survive.
    let from = version::at_millis(clock.millis_at(now + 10));
    s.apply(&remote(b"late", b"v", from - (1 << 20)), now + 9);
    s.apply(&remote(b"after", b"v", from + 2), now + 10);
    assert!(value(&s, b"late", now + 9).is_none());
    assert!(value(&s, b"after", now + 10).is_some());
}

#[test]
fn a_flush_from_the_peer_spares_later_writes_here_within_its_second() {
    let s = store();
    s.hlc().set_tag(2);
    set(&s, b"before", b"v");
    // The peer's clock runs a little ahead: its flush carries a version newer than any here.
    let peer = s.hlc().next() + (5 << 20) - 1;
    s.apply_flush(Flush::immediate(peer), NOW);
    set(&s, b"after", b"v");
    assert!(value(&s, b"before", NOW).is_none());
    assert_eq!(value(&s, b"after", NOW).as_deref(), Some(&b"v"[..]));
    // Items from the peer older than the flush stay flushed when they arrive after it.
    assert!(s.apply(&remote(b"late", b"v", peer - 1), NOW));
    assert!(value(&s, b"late", NOW).is_none());
}

#[test]
fn a_flush_issued_before_another_cancels_nothing_it_did_not_reach() {
    let (s, clock) = (store(), Clock::new());
    let now = clock.now();
    set(&s, b"k", b"v");
    // flush_all 1000 then flush_all: the immediate one flushes, the delayed one is cancelled.
    s.flush_all(&clock, now, now + 1000);
    assert!(value(&s, b"k", now).is_some());
    s.flush_all(&clock, now, now);
    assert!(value(&s, b"k", now).is_none());
    set(&s, b"k", b"v");
    assert!(value(&s, b"k", now + 2000).is_some());
    // An absolute time before the start cancels a pending flush and flushes nothing.
    s.flush_all(&clock, now, now + 5);
    s.flush_all(&clock, now, 1);
    assert!(value(&s, b"k", now + 10).is_some());
}

const CLAIM: ReadOptions = ReadOptions {
    touch: None,
    vivify: None,
    recache_before: None,
    recache_after_touch: false,
    claim_win: true,
    no_bump: false,
};

fn read_state(s: &Store, key: &[u8], opts: ReadOptions) -> Option<ReadState> {
    s.read(key, NOW, opts, |_, st| st)
}

#[test]
fn invalidation_hands_out_one_win() {
    let s = store();
    set(&s, b"k", b"v");
    s.delete(b"k", NOW, DeleteRequest { invalidate: true, ..DeleteRequest::default() });
    // A plain read leaves the token for a meta client.
    let plain = read_state(&s, b"k", ReadOptions::default()).unwrap();
    assert!(plain.stale && !plain.win && !plain.won_elsewhere);
    let first = read_state(&s, b"k", CLAIM).unwrap();
    assert!(first.stale && first.win);
    let second = read_state(&s, b"k", CLAIM).unwrap();
    assert!(second.stale && !second.win && second.won_elsewhere);
    // Invalidating again makes the token available again.
    s.delete(b"k", NOW, DeleteRequest { invalidate: true, ..DeleteRequest::default() });
    assert!(read_state(&s, b"k", CLAIM).unwrap().win);
}

#[test]
fn vivify_creates_an_empty_won_item() {
    let s = store();
    let opts = ReadOptions { vivify: Some(NOW + 30), ..CLAIM };
    let created = s.read(b"k", NOW, opts, |it, st| (it.value().len(), it.exptime, st)).unwrap();
    assert_eq!((created.0, created.1), (0, NOW + 30));
    assert!(created.2.created && created.2.win && created.2.exptime == 0);
    // Every later reader sees that someone holds the token, whatever it asked.
    let later = read_state(&s, b"k", ReadOptions::default()).unwrap();
    assert!(later.won_elsewhere && !later.win && !later.created);
    // The creating read counted as a fetch (memcached bumps the new item)...
    assert!(later.fetched);
    // ...unless it asked not to bump, and without claim_win nobody holds the token.
    let quiet = ReadOptions { vivify: Some(0), no_bump: true, ..ReadOptions::default() };
    assert!(!read_state(&s, b"q", quiet).unwrap().win);
    let after = read_state(&s, b"q", ReadOptions::default()).unwrap();
    assert!(!after.fetched && !after.won_elsewhere);
}

#[test]
fn recache_wins_once_for_items_expiring_soon() {
    let s = store();
    let mut req = StoreRequest::new(Mode::Set, b"k", b"v");
    req.exptime = NOW + 100;
    s.store(&req, NOW);
    let before = |t| ReadOptions { recache_before: Some(t), ..CLAIM };
    assert!(!read_state(&s, b"k", before(NOW + 100)).unwrap().win);
    // With a touch to NOW+10 on the same line, the order of the flags decides what R sees.
    let touch_then_r = ReadOptions { touch: Some(NOW + 10), recache_after_touch: true, ..before(NOW + 30) };
    let r_then_touch = ReadOptions { recache_after_touch: false, ..touch_then_r };
    let st = read_state(&s, b"k", r_then_touch).unwrap();
    assert!(!st.win && st.exptime == NOW + 100);
    let st = read_state(&s, b"k", touch_then_r).unwrap();
    assert!(st.win && st.exptime == NOW + 10);
    assert!(read_state(&s, b"k", before(NOW + 30)).unwrap().won_elsewhere);
    // Items that never expire are never due.
    set(&s, b"forever", b"v");
    assert!(!read_state(&s, b"forever", before(u32::MAX)).unwrap().win);
}

#[test]
fn no_bump_leaves_fetch_state() {
    let s = store();
    set(&s, b"k", b"v");
    let peek = ReadOptions { no_bump: true, ..ReadOptions::default() };
    assert!(!read_state(&s, b"k", peek).unwrap().fetched);
    assert!(!read_state(&s, b"k", ReadOptions::default()).unwrap().fetched);
    assert!(read_state(&s, b"k", ReadOptions::default()).unwrap().fetched);
}

#[test]
fn touch_counts_as_a_fetch() {
    let s = store();
    set(&s, b"k", b"v");
    assert!(s.touch(b"k", NOW, NOW + 5));
    let st = read_state(&s, b"k", ReadOptions::default()).unwrap();
    assert!(st.fetched && st.exptime == NOW + 5);
}

#[test]
fn peek_neither_counts_nor_bumps() {
    let s = store();
    set(&s, b"k", b"v");
    assert_eq!(s.peek(b"k", NOW, |it| it.value().to_vec()).as_deref(), Some(&b"v"[..]));
    assert_eq!(s.peek(b"none", NOW, |_| ()), None);
    assert_eq!(s.stats().counters.cmd_get, 0);
    assert!(!read_state(&s, b"k", ReadOptions::default()).unwrap().fetched);
}

#[test]
fn binary_keys_are_remembered_until_the_item_is_rebuilt() {
    let s = store();
    let binary = |key, value| {
        let mut req = StoreRequest::new(Mode::Set, key, value);
        req.binary_key = true;
        s.store(&req, NOW)
    };
    let is_binary = |key| read_state(&s, key, ReadOptions::default()).unwrap().binary_key;
    binary(b"k", b"v");
    assert!(is_binary(b"k"));
    set(&s, b"k", b"v");
    assert!(!is_binary(b"k"));
    binary(b"k", b"v");
    s.store(&StoreRequest::new(Mode::Append, b"k", b"w"), NOW);
    assert!(!is_binary(b"k"));
    // incr rewrites in place when the number fits, and builds a new item when it grows.
    binary(b"n", b"10");
    let incr = |delta| ArithRequest { incr: true, delta, cas: 0, vivify: None, touch: None };
    s.arith(b"n", NOW, incr(1));
    assert!(is_binary(b"n"));
    s.arith(b"n", NOW, incr(1000));
    assert!(!is_binary(b"n"));
}

#[test]
fn rebuilt_items_start_fresh() {
    let s = store();
    set(&s, b"k", b"1");
    read_state(&s, b"k", ReadOptions::default());
    s.delete(b"k", NOW, DeleteRequest { invalidate: true, ..DeleteRequest::default() });
    s.store(&StoreRequest::new(Mode::Append, b"k", b"0"), NOW);
    let st = read_state(&s, b"k", ReadOptions::default()).unwrap();
    assert!(!st.fetched && !st.stale);
    // In place incr keeps the fetch mark; a longer number is a new, unfetched item.
    let incr = |delta| ArithRequest { incr: true, delta, cas: 0, vivify: None, touch: None };
    s.arith(b"k", NOW, incr(1));
    assert!(read_state(&s, b"k", ReadOptions::default()).unwrap().fetched);
    s.arith(b"k", NOW, incr(1000));
    assert!(!read_state(&s, b"k", ReadOptions::default()).unwrap().fetched);
}

#[test]
fn stale_cas_store_keeps_expiry_and_token() {
    let s = store();
    let mut req = StoreRequest::new(Mode::Set, b"k", b"v1");
    req.exptime = NOW + 30;
    let first = s.store(&req, NOW).cas;
    s.delete(b"k", NOW, DeleteRequest { invalidate: true, ..DeleteRequest::default() });
    assert!(read_state(&s, b"k", CLAIM).unwrap().win);
    let mut late = StoreRequest::new(Mode::Cas, b"k", b"v2");
    late.cas = first;
    late.invalidate = true;
    late.exptime = NOW + 500;
    assert_eq!(s.store(&late, NOW).status, StoreStatus::Stored);
    let (value, st) = s.read(b"k", NOW, ReadOptions::default(), |it, st| (it.value().to_vec(), st)).unwrap();
    assert_eq!(value, b"v2");
    assert!(st.stale && st.won_elsewhere && st.exptime == NOW + 30);
    // A zero CAS is no CAS at all: it never matches and is never merely older.
    late.cas = 0;
    assert_eq!(s.store(&late, NOW).status, StoreStatus::Exists);
}

#[test]
fn arith_reports_the_expiry_it_replaced() {
    let s = store();
    let mut req = StoreRequest::new(Mode::Set, b"n", b"1");
    req.exptime = NOW + 50;
    s.store(&req, NOW);
    let touched = ArithRequest { incr: true, delta: 1, cas: 0, vivify: None, touch: Some(NOW + 9) };
    assert!(matches!(
        s.arith(b"n", NOW, touched),
        ArithOutcome::Done { value: 2, exptime, prev_exptime, .. } if exptime == NOW + 9 && prev_exptime == NOW + 50
    ));
    // A number that outgrows its value is a new item, which keeps the expiry (memcached 1.6.18).
    let grow = ArithRequest { delta: 100, touch: Some(NOW + 70), ..touched };
    assert!(matches!(
        s.arith(b"n", NOW, grow),
        ArithOutcome::Done { value: 102, exptime, .. } if exptime == NOW + 9
    ));
}

#[test]
fn memcached_item_size_counts_header_key_value_and_cas() {
    assert_eq!(memcached_item_size(5, 2, 0), 66);
    assert_eq!(memcached_item_size(5, 2, 1), 70);
}

/// Records what the store reports, as replication's backlog would.
#[derive(Default)]
struct Recorder(parking_lot::Mutex<Vec<String>>);

impl ChangeSink for Recorder {
    fn record(&self, change: Change<'_>) {
        let line = match change {
            Change::Set(it) => {
                format!("set {} {}", String::from_utf8_lossy(it.key()), String::from_utf8_lossy(it.value()))
            }
            Change::Delete { key, .. } => format!("delete {}", String::from_utf8_lossy(key)),
            Change::Flush(flush) => format!("flush delayed={}", flush.delayed),
        };
        self.0.lock().push(line);
    }
}

fn remote<'a>(key: &'a [u8], value: &'a [u8], version: u64) -> RemoteItem<'a> {
    RemoteItem { key, value, flags: 3, exptime: 0, cas: 777, version, deleted: false }
}

#[test]
fn every_local_write_is_reported_in_order() {
    let s = store();
    let rec = Arc::new(Recorder::default());
    assert!(s.set_change_sink(rec.clone()).is_ok());
    set(&s, b"k", b"1");
    s.store(&StoreRequest::new(Mode::Append, b"k", b"2"), NOW);
    s.arith(b"k", NOW, ArithRequest { incr: true, delta: 1, cas: 0, vivify: None, touch: None });
    s.touch(b"k", NOW, NOW + 10);
    s.delete(b"k", NOW, DeleteRequest::default());
    s.flush_all(&Clock::new(), NOW, NOW);
    assert_eq!(*rec.0.lock(), ["set k 1", "set k 12", "set k 13", "set k 13", "delete k", "flush delayed=false"]);
}

#[test]
fn remote_writes_apply_only_when_newer_and_keep_their_cas() {
    let s = store();
    let local = set(&s, b"k", b"local");
    let local_version = s.get(b"k", NOW, |it| it.version).unwrap();
    assert!(!s.apply(&remote(b"k", b"older", local_version - 1), NOW));
    assert!(s.apply(&remote(b"k", b"newer", local_version + 1), NOW));
    assert_eq!(s.get(b"k", NOW, |it| (it.value().to_vec(), it.cas, it.flags)), Some((b"newer".to_vec(), 777, 3)));
    // Local writes after it order after it, and CAS values never go back.
    assert!(set(&s, b"k", b"again").cas > 777.max(local.cas));
    assert!(s.get(b"k", NOW, |it| it.version).unwrap() > local_version + 1);
}

#[test]
fn deletes_are_remembered_against_older_writes() {
    let s = store();
    s.set_change_sink(Arc::new(Recorder::default())).ok();
    set(&s, b"k", b"v");
    let version = s.get(b"k", NOW, |it| it.version).unwrap();
    s.delete(b"k", NOW, DeleteRequest::default());
    // The peer's copy of the old value arrives late: it must not resurrect the key.
    assert!(!s.apply(&remote(b"k", b"v", version), NOW));
    assert!(s.get(b"k", NOW, |_| ()).is_none());
    // A remote delete newer than the local item removes it.
    set(&s, b"j", b"v");
    let newer = s.hlc().next();
    assert!(s.apply(&RemoteItem { deleted: true, ..remote(b"j", b"", newer) }, NOW));
    assert!(s.get(b"j", NOW, |_| ()).is_none());
}

#[test]
fn snapshots_hold_items_and_tombstones() {
    let s = store();
    s.set_change_sink(Arc::new(Recorder::default())).ok();
    for i in 0..100 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    s.delete(b"k7", NOW, DeleteRequest::default());
    let mut seen = Vec::new();
    for shard in 0..s.shard_count() {
        s.snapshot(shard, NOW, |c| match c {
            Change::Set(it) => seen.push(format!("set {}", String::from_utf8_lossy(it.key()))),
            Change::Delete { key, .. } => seen.push(format!("delete {}", String::from_utf8_lossy(key))),
            Change::Flush(_) => unreachable!(),
        });
    }
    assert_eq!(seen.len(), 100);
    assert!(seen.contains(&"delete k7".to_string()) && !seen.contains(&"set k7".to_string()));
}

#[test]
fn bytes_held_back_from_items_are_evicted_and_stay_free_until_given_back() {
    let s = Store::new(Config { limit_bytes: 1 << 20, item_size_max: 1 << 20 });
    let v = vec![b'v'; 1000];
    for i in 0..2000 {
        set(&s, format!("k{i}").as_bytes(), &v);
    }
    assert!(s.used_bytes() > 900 << 10, "the store is full: {}", s.used_bytes());
    s.hold_back(512 << 10, NOW);
    assert!(s.used_bytes() <= 512 << 10, "{}", s.used_bytes());
    for i in 2000..3000 {
        set(&s, format!("k{i}").as_bytes(), &v);
    }
    assert!(s.used_bytes() <= 512 << 10, "writes stay within what is left: {}", s.used_bytes());
    s.hold_back(0, NOW);
    for i in 3000..4000 {
        set(&s, format!("k{i}").as_bytes(), &v);
    }
    assert!(s.used_bytes() > 900 << 10, "all of -m again: {}", s.used_bytes());
    assert_eq!(value(&s, b"k3999", NOW).as_deref(), Some(&v[..]));
}

#[test]
fn a_walk_sees_every_live_item_once_in_bounded_steps_and_resumes_where_f_stopped() {
    let s = store();
    for i in 0..1000 {
        set(&s, format!("k{i}").as_bytes(), b"v");
    }
    let mut req = StoreRequest::new(Mode::Set, b"gone", b"v");
    req.exptime = NOW + 1;
    s.store(&req, NOW);
    s.delete(b"k7", NOW, DeleteRequest::default());
    let mut seen = Vec::new();
    let mut pos = WalkPos::default();
    let mut steps = 0;
    // Stop after every third item: the next step starts with the item after it.
    while s.walk(&mut pos, NOW + 1, 10, |it| {
        seen.push(it.key().to_vec());
        seen.len() % 3 != 0
    }) {
        steps += 1;
    }
    assert!(steps > 64, "steps of 10 slots: {steps}");
    seen.sort();
    let mut expected: Vec<Vec<u8>> = (0..1000).filter(|&i| i != 7).map(|i| format!("k{i}").into_bytes()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(!s.walk(&mut pos, NOW, 10, |_| true), "a finished walk stays finished");
}
