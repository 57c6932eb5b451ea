//! The replicas served by this process, by the address their server listens on. An engine in
//! the same process (the node agent runs both) reaches such a replica directly: no TCP round
//! trip, no copies through a socket, no thread hops for page-cache I/O. A replica whose server
//! was stopped is retired: its slot fails at the next call, as a remote one would.
//!
//! [`LocalReplicas`] is a handle: the node agent makes one, registers its replica servers in
//! it and gives it to the engines it starts; a process without replica servers gives its
//! engines an empty one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ironhorn_replica::SharedReplica;

/// Replicas of this process by server address. Clones share one set.
#[derive(Debug, Clone, Default)]
pub struct LocalReplicas {
    by_address: Arc<Mutex<HashMap<String, Arc<SharedReplica>>>>,
}

impl LocalReplicas {
    /// An empty set: engines given it reach every replica over the network.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SharedReplica>>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `replica` is served at `address` (as engines are given it) by this process.
    pub fn register(&self, address: &str, replica: Arc<SharedReplica>) {
        self.map().insert(address.to_string(), replica);
    }

    /// The server at `address` stopped: engines opening it from now on connect over the
    /// network, and the ones that use it directly fail it (see [`SharedReplica::retire`]).
    pub fn unregister(&self, address: &str) {
        if let Some(replica) = self.map().remove(address) {
            replica.retire();
        }
    }

    /// The in-process replica served at `address`, if any.
    pub(crate) fn lookup(&self, address: &str) -> Option<Arc<SharedReplica>> {
        self.map().get(address).filter(|r| !r.is_retired()).cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use ironhorn_replica::Replica;

    use super::*;
    use crate::{BlockDevice, Engine, EngineError, Fencing, Mode, ReplicaSpec, WriteQuorum};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_uses_a_replica_of_its_process_directly_until_its_server_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let replica = Replica::create(&tmp.path().join("vol-0a0b0c0d"), 1 << 20).unwrap();
        let shared = Arc::new(SharedReplica::new(replica));
        let locals = LocalReplicas::new();
        // Nothing listens at this address: the engine can only have reached it directly.
        let address = "127.0.0.1:1";
        locals.register(address, shared.clone());
        let spec: ReplicaSpec = address.parse().unwrap();
        let engine = Engine::start("vol", 1 << 20, &[spec], Duration::from_secs(5), &locals)
            .await
            .unwrap();
        engine.write(vec![7u8; 8192], 4096, false).await.unwrap();
        engine.flush().await.unwrap();
        let mut back = vec![0u8; 8192];
        shared.read_at(&mut back, 4096).unwrap();
        assert!(
            back.iter().all(|b| *b == 7),
            "the write reached the replica"
        );

        // Its server stops: the engine's next call fails the replica, as a closed
        // connection would, and a new engine cannot find it any more.
        locals.unregister(address);
        assert!(shared.is_retired());
        assert!(engine.write(vec![1u8; 4096], 0, false).await.is_err());
        assert_eq!(engine.status()[0].mode, Mode::ERR);
        assert!(locals.lookup(address).is_none());
        engine.shutdown().await;
    }

    /// A replica that cannot be opened at start holds its place, ERR, so a majority quorum
    /// counts it: on two of three replicas both must take a write. And an engine asked to
    /// claim more replicas than it can reach does not start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_replica_counts_in_the_quorum_and_claims_can_be_required() {
        let tmp = tempfile::tempdir().unwrap();
        let specs: Vec<ReplicaSpec> = vec![
            ReplicaSpec::Local(tmp.path().join("vol-00000001")),
            ReplicaSpec::Local(tmp.path().join("vol-00000002")),
            // Nothing listens here: connecting is refused.
            "127.0.0.1:1".parse().unwrap(),
        ];
        let fencing = |min_claimed| Fencing {
            generation: 7,
            quorum: WriteQuorum::Majority,
            min_claimed,
        };
        let locals = LocalReplicas::new();
        let timeout = Duration::from_secs(5);
        let too_few = Engine::start_fenced("vol", 1 << 20, &specs, timeout, &locals, fencing(3))
            .await
            .unwrap_err();
        assert!(
            matches!(
                too_few,
                EngineError::TooFewClaimed {
                    claimed: 2,
                    needed: 3,
                    ..
                }
            ),
            "{too_few}"
        );
        let engine = Engine::start_fenced("vol", 1 << 20, &specs, timeout, &locals, fencing(2))
            .await
            .unwrap();
        let modes: Vec<Mode> = engine.status().iter().map(|s| s.mode).collect();
        assert_eq!(modes, [Mode::RW, Mode::RW, Mode::ERR]);
        assert!(
            engine.status()[2].reason.contains("could not be opened"),
            "{:?}",
            engine.status()
        );
        assert_eq!(engine.write_quorum(), 2, "the unopened replica counts");
        engine.write(vec![3u8; 4096], 0, false).await.unwrap();
        assert_eq!(engine.read(0, 4096).await.unwrap(), vec![3u8; 4096]);
        engine.shutdown().await;
    }
}
