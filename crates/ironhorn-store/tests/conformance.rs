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
    assert!(matches!(error, StoreError::Backend { .. }), "{error}");
    assert!(error.to_string().contains("etcd://127.0.0.1:"), "{error}");
    // Connecting to nobody is refused as clearly.
    let nobody = EtcdConfig {
        timeout: Duration::from_secs(1),
        ..EtcdConfig::from_url("etcd://127.0.0.1:1").unwrap()
    };
    let error = EtcdStore::connect(nobody).await.unwrap_err();
    assert!(error.to_string().contains("etcd://127.0.0.1:1"), "{error}");
}
