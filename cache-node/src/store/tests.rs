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
    assert_eq!((st.counters.get_hits, st.counters.get_misses, st.curr_items), (1, 1, 0));
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
    for _ in 0..64 {
        s.sweep(NOW + 5, 1000);
    }
    assert_eq!(s.stats().curr_items, 0);
    assert_eq!(s.used_bytes(), 0);
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
    assert!(st.counters.evictions > 3000);
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
    let s = store();
    set(&s, b"old", b"v");
    s.flush_all(NOW, NOW);
    set(&s, b"new", b"v");
    assert!(value(&s, b"old", NOW).is_none());
    assert!(value(&s, b"new", NOW).is_some());
    // A delayed flush takes effect only at its time.
    s.flush_all(NOW, NOW + 10);
    assert!(value(&s, b"new", NOW + 5).is_some());
    assert!(value(&s, b"new", NOW + 10).is_none());
}

#[test]
fn invalidation_hands_out_one_win() {
    let s = store();
    set(&s, b"k", b"v");
    s.delete(b"k", NOW, DeleteRequest { invalidate: true, ..DeleteRequest::default() });
    let first = s.read(b"k", NOW, ReadOptions::default(), |_, st| st).unwrap();
    assert!(first.stale && first.win);
    let second = s.read(b"k", NOW, ReadOptions::default(), |_, st| st).unwrap();
    assert!(second.stale && !second.win && second.won_elsewhere);
}
