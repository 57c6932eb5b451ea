//! What every [`Store`] must do, checked on each implementation alike: the embedded redb
//! store and the etcd store against a real etcd (Debian's etcd-server, started per test):
//! compare-and-put refuses stale and duplicate writes, deletes are conditional, lists keep
//! to one prefix in key order, revisions grow, and concurrent read-modify-write loops (two
//! separate etcd clients standing for two managers) lose no update. Then what only etcd can
//! show: a store whose etcd is gone fails with a clear error within its deadline.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ironhorn_store::{EtcdConfig, EtcdStore, Expect, RedbStore, Store, StoreError};
use ironhorn_testkit::servers::EtcdServer;

/// The stores under test, each empty: redb in a temporary file, and two clients of one
/// etcd namespace (so writes through one are seen, and contended, by the other).
struct Stores {
    _dir: tempfile::TempDir,
    _etcd: EtcdServer,
    redb: Arc<dyn Store>,
    etcd: Arc<dyn Store>,
    etcd_other_client: Arc<dyn Store>,
}

async fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap());
    let etcd = EtcdServer::start();
    let config = EtcdConfig::from_url(&etcd.url()).unwrap();
    let first = Arc::new(EtcdStore::connect(config.clone()).await.unwrap());
    let second = Arc::new(EtcdStore::connect(config).await.unwrap());
    Stores {
        _dir: dir,
        _etcd: etcd,
        redb,
        etcd: first,
        etcd_other_client: second,
    }
}

impl Stores {
    fn each(&self) -> [(&'static str, Arc<dyn Store>); 2] {
        [("redb", self.redb.clone()), ("etcd", self.etcd.clone())]
    }
}

#[tokio::test]
async fn compare_and_put_refuses_stale_and_duplicate_writes() {
    let stores = stores().await;
    for (name, s) in stores.each() {
        let r1 = s.put("volumes/a", b"one", Expect::Absent).await.unwrap();
        assert!(
            matches!(
                s.put("volumes/a", b"again", Expect::Absent).await,
                Err(StoreError::Conflict { found: Some(r), .. }) if r == r1
            ),
            "{name}"
        );
        let r2 = s
            .put("volumes/a", b"two", Expect::Revision(r1))
            .await
            .unwrap();
        assert!(r2 > r1, "{name}");
        let entry = s.get("volumes/a").await.unwrap().unwrap();
        assert_eq!(
            (entry.key.as_str(), entry.value.as_slice(), entry.revision),
            ("volumes/a", b"two".as_slice(), r2),
            "{name}"
        );
        assert!(
            matches!(
                s.put("volumes/a", b"lost update", Expect::Revision(r1)).await,
                Err(StoreError::Conflict { found: Some(r), .. }) if r == r2
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.put("volumes/none", b"x", Expect::Revision(r1)).await,
                Err(StoreError::Conflict { found: None, .. })
            ),
            "{name}"
        );
        assert_eq!(s.get("volumes/a").await.unwrap().unwrap().value, b"two");
        assert!(s.revision().await.unwrap() >= r2, "{name}");
    }
}

#[tokio::test]
async fn deletes_are_conditional_and_deleting_nothing_is_no_error() {
    let stores = stores().await;
    for (name, s) in stores.each() {
        let r1 = s.put("nodes/n1", b"1", Expect::Any).await.unwrap();
        assert!(
            matches!(
                s.delete("nodes/n1", Expect::Absent).await,
                Err(StoreError::Conflict { .. })
            ),
            "{name}"
        );
        let r2 = s.put("nodes/n1", b"2", Expect::Any).await.unwrap();
        assert!(
            matches!(
                s.delete("nodes/n1", Expect::Revision(r1)).await,
                Err(StoreError::Conflict { found: Some(r), .. }) if r == r2
            ),
            "{name}"
        );
        let deleted = s.delete("nodes/n1", Expect::Revision(r2)).await.unwrap();
        assert!(deleted.is_some_and(|r| r > r2), "{name}: {deleted:?}");
        assert!(s.get("nodes/n1").await.unwrap().is_none(), "{name}");
        assert_eq!(s.delete("nodes/n1", Expect::Any).await.unwrap(), None);
        assert_eq!(s.delete("nodes/n1", Expect::Absent).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_list_keeps_to_its_prefix_in_key_order() {
    let stores = stores().await;
    for (name, s) in stores.each() {
        for key in [
            "volumes/b",
            "nodes/n1",
            "volumes/a",
            "volumes0",
            "volumes/c",
        ] {
            s.put(key, key.as_bytes(), Expect::Any).await.unwrap();
        }
        let listed = s.list("volumes/").await.unwrap();
        let keys: Vec<&str> = listed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["volumes/a", "volumes/b", "volumes/c"], "{name}");
        assert!(listed.iter().all(|e| e.value == e.key.as_bytes()), "{name}");
        assert!(s.list("replicas/").await.unwrap().is_empty(), "{name}");
    }
}

/// Read, add one, write back if unchanged: 4 tasks × 25 increments, none lost. On etcd the
/// tasks alternate between two clients, as two managers would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_lose_no_update() {
    let stores = stores().await;
    let cases: [(&str, [Arc<dyn Store>; 2]); 2] = [
        ("redb", [stores.redb.clone(), stores.redb.clone()]),
        (
            "etcd",
            [stores.etcd.clone(), stores.etcd_other_client.clone()],
        ),
    ];
    for (name, clients) in cases {
        clients[0]
            .put("counter", b"0", Expect::Absent)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..4 {
            let s = clients[t % 2].clone();
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..25 {
                    loop {
                        let e = s.get("counter").await.unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&e.value).unwrap().parse().unwrap();
                        let next = (n + 1).to_string();
                        match s
                            .put("counter", next.as_bytes(), Expect::Revision(e.revision))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await.unwrap();
        }
        let value = clients[1].get("counter").await.unwrap().unwrap().value;
        assert_eq!(value, b"100", "{name} ({conflicts} conflicts retried)");
    }
}

/// While nothing changes, reads are answered from the store's copy of the namespace; a
/// change made through another client is read at once (the copy is not used until it has
/// it), and from memory again once the watch brought it.
#[tokio::test]
async fn idle_reads_come_from_memory_and_never_miss_a_change() {
    let stores = stores().await;
    let config = EtcdConfig::from_url(&stores._etcd.url()).unwrap();
    let reader = EtcdStore::connect(config.clone()).await.unwrap();
    let writer = EtcdStore::connect(config).await.unwrap();
    writer.put("volumes/a", b"1", Expect::Any).await.unwrap();
    let mut changes = reader.changes();
    for n in 2..30u32 {
        let value = n.to_string();
        writer
            .put("volumes/a", value.as_bytes(), Expect::Any)
            .await
            .unwrap();
        // Straight after the write: whatever the copy has, the read sees it.
        assert_eq!(
            reader.get("volumes/a").await.unwrap().unwrap().value,
            value.as_bytes()
        );
        let listed = reader.list("volumes/").await.unwrap();
        assert_eq!(listed[0].value, value.as_bytes());
    }
    let before = reader.reads_from_memory();
    let now = writer.revision().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|r| *r >= now))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(reader.list("volumes/").await.unwrap().len(), 1);
        assert_eq!(reader.get("volumes/a").await.unwrap().unwrap().value, b"29");
    }
    assert_eq!(reader.reads_from_memory() - before, 20);
}

#[tokio::test]
async fn keys_of_another_namespace_are_not_seen() {
    let stores = stores().await;
    let mut config = EtcdConfig::from_url(&stores._etcd.url()).unwrap();
    config.namespace = "/other-cluster/".into();
    let other = EtcdStore::connect(config).await.unwrap();
    stores
        .etcd
        .put("volumes/a", b"ours", Expect::Any)
        .await
        .unwrap();
    other
        .put("volumes/b", b"theirs", Expect::Any)
        .await
        .unwrap();
    let ours: Vec<String> = stores
        .etcd
        .list("volumes/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(ours, ["volumes/a"]);
    assert!(other.get("volumes/a").await.unwrap().is_none());
}

#[tokio::test]
async fn a_store_whose_etcd_is_gone_fails_clearly_within_its_deadline() {
    let etcd = EtcdServer::start();
    let mut config = EtcdConfig::from_url(&etcd.url()).unwrap();
    config.timeout = Duration::from_secs(1);
    let store = EtcdStore::connect(config).await.unwrap();
    store.put("settings/x", b"1", Expect::Any).await.unwrap();
    drop(etcd);
    let started = Instant::now();
    let error = store.get("settings/x").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error}");
    assert!(error.to_string().contains("etcd://127.0.0.1:"), "{error}");
    // Connecting to nobody is refused as clearly.
    let nobody = EtcdConfig {
        timeout: Duration::from_secs(1),
        ..EtcdConfig::from_url("etcd://127.0.0.1:1").unwrap()
    };
    let error = EtcdStore::connect(nobody).await.unwrap_err();
    assert!(error.to_string().contains("etcd://127.0.0.1:1"), "{error}");
}

#[tokio::test]
async fn changes_are_told_to_every_client_of_the_store() {
    let stores = stores().await;
    for (name, s) in stores.each() {
        let mut changes = s.changes();
        changes.borrow_and_update();
        let made = s.put("volumes/told", b"1", Expect::Any).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("{name}: no change told"))
            .unwrap();
        assert!(*changes.borrow_and_update() >= made, "{name}");
    }
    // A write through one etcd client is told to the other.
    let mut other = stores.etcd_other_client.changes();
    other.borrow_and_update();
    let made = stores
        .etcd
        .put("volumes/elsewhere", b"1", Expect::Any)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while *other.borrow_and_update() < made {
        assert!(Instant::now() < deadline, "the other client was not told");
        let _ = tokio::time::timeout(Duration::from_millis(500), other.changed()).await;
    }
}

/// One leader at a time; a term's store writes only while the term holds, so the first
/// leader's late write fails once a second has been elected; reads go on.
#[tokio::test]
async fn one_leader_at_a_time_and_a_deposed_leaders_write_fails() {
    let stores = stores().await;
    let first = stores.etcd.campaign("manager-a").await.unwrap();
    assert_eq!(
        stores.etcd_other_client.leader().await.unwrap().as_deref(),
        Some("manager-a")
    );
    first
        .store
        .put("volumes/v", b"by a", Expect::Any)
        .await
        .unwrap();
    // The second candidate waits while the first leads.
    let other = stores.etcd_other_client.clone();
    let second = tokio::spawn(async move { other.campaign("manager-b").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "two leaders at once");
    // The first one's term ends (as a lease that lapsed would): the second is elected, and
    // a write made for the first term is refused, whatever it expects.
    let stale = first.store.clone();
    let started = Instant::now();
    first.resign().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second candidate was not elected")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stores.etcd.leader().await.unwrap().as_deref(),
        Some("manager-b")
    );
    for expect in [Expect::Any, Expect::Absent] {
        let late = stale.put("volumes/late", b"by a", expect).await;
        assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    }
    let entry = stale.get("volumes/v").await.unwrap().unwrap();
    assert!(matches!(
        stale
            .delete("volumes/v", Expect::Revision(entry.revision))
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(stores.etcd.get("volumes/late").await.unwrap().is_none());
    // The new leader writes.
    second
        .store
        .put("volumes/v", b"by b", Expect::Revision(entry.revision))
        .await
        .unwrap();
    assert!(second.number > 0);
    assert!(!second.ended.is_cancelled());
}

/// A leader keeps leading, term after term of its lease, while etcd answers.
#[tokio::test]
async fn a_leader_keeps_its_term_while_it_renews() {
    let stores = stores().await;
    let term = stores.etcd.campaign("manager-a").await.unwrap();
    let ttl = EtcdConfig::from_url("etcd://x:1").unwrap().lease_ttl;
    tokio::time::sleep(ttl * 2).await;
    assert!(
        !term.ended.is_cancelled(),
        "the term ended while etcd answered"
    );
    term.store
        .put("volumes/still", b"1", Expect::Any)
        .await
        .unwrap();
}

/// A leader that cannot renew its lease (etcd gone) ends its term by itself, within two
/// thirds of the lease's time to live: before etcd could elect anyone else.
#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_expires() {
    let etcd = EtcdServer::start();
    let config = EtcdConfig {
        timeout: Duration::from_secs(1),
        ..EtcdConfig::from_url(&etcd.url()).unwrap()
    };
    let store = EtcdStore::connect(config.clone()).await.unwrap();
    let term = store.campaign("manager-a").await.unwrap();
    let elected = Instant::now();
    drop(etcd);
    tokio::time::timeout(config.lease_ttl, term.ended.cancelled())
        .await
        .expect("the term did not end within the lease's time to live");
    assert!(
        elected.elapsed() < config.lease_ttl,
        "{:?}",
        elected.elapsed()
    );
}

/// The embedded store has one process: it leads at once, for good.
#[tokio::test]
async fn the_embedded_store_leads_at_once() {
    let stores = stores().await;
    let term = stores.redb.campaign("only").await.unwrap();
    term.store
        .put("volumes/x", b"1", Expect::Any)
        .await
        .unwrap();
    assert!(!term.ended.is_cancelled());
    assert_eq!(stores.redb.leader().await.unwrap(), None);
}
