//! [`EtcdStore`]: the state in etcd (v3 API), for several managers. Keys live under a
//! namespace (`/ironhorn/` by default) so the cluster can be shared; an entry's revision is
//! etcd's `mod_revision` and the store's revision etcd's, so both keep growing across every
//! manager. A conditional write is one etcd transaction comparing the key's `mod_revision`
//! (or its absence), so two managers can never both win the same update. Every call has a
//! deadline: an etcd that has lost its quorum gives a clear error instead of a hang.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};

use crate::{Entry, Expect, Store, StoreError, StoreFuture};

/// Where and how to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` (or `http://host:port`) of each member.
    pub endpoints: Vec<String>,
    /// Prefix of every key this store writes, e.g. `/ironhorn/`.
    pub namespace: String,
    /// The longest a call may take before it fails (quorum lost, members unreachable).
    pub timeout: Duration,
}

impl EtcdConfig {
    /// The members of an `etcd://h1:2379,h2:2379` address, with the default namespace and
    /// a 5 s deadline per call.
    pub fn from_url(url: &str) -> Result<EtcdConfig, StoreError> {
        let Some(rest) = url.strip_prefix("etcd://") else {
            return Err(invalid(
                url,
                "an etcd store is given as etcd://HOST:PORT[,HOST:PORT...]",
            ));
        };
        let endpoints: Vec<String> = rest
            .trim_end_matches('/')
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(invalid(
                url,
                "name at least one etcd member: etcd://HOST:PORT",
            ));
        }
        Ok(EtcdConfig {
            endpoints,
            namespace: "/ironhorn/".to_string(),
            timeout: Duration::from_secs(5),
        })
    }
}

fn invalid(url: &str, why: &str) -> StoreError {
    StoreError::Backend {
        path: url.to_string(),
        source: why.into(),
    }
}

/// The store; cheap to clone (the client multiplexes one connection per member).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: EtcdConfig,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("namespace", &self.config.namespace)
            .finish()
    }
}

/// An etcd revision as ours (etcd's are never negative).
fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

impl EtcdStore {
    /// Connects to the members of `config` and checks that etcd answers.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(10), config.timeout);
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| Self::fail_with(&config, e))?;
        let store = EtcdStore { client, config };
        store.current_revision().await?;
        Ok(store)
    }

    fn fail_with(config: &EtcdConfig, e: etcd_client::Error) -> StoreError {
        StoreError::Backend {
            path: format!("etcd://{}", config.endpoints.join(",")),
            source: Box::new(e),
        }
    }

    fn fail(&self, e: etcd_client::Error) -> StoreError {
        Self::fail_with(&self.config, e)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.config.namespace)
    }

    /// An etcd key-value as an entry (its key without the namespace).
    fn entry(&self, kv: &etcd_client::KeyValue) -> Entry {
        let key = String::from_utf8_lossy(kv.key());
        Entry {
            key: key
                .strip_prefix(&self.config.namespace)
                .unwrap_or(&key)
                .to_string(),
            value: kv.value().to_vec(),
            revision: revision(kv.mod_revision()),
        }
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        let response = self
            .client
            .kv_client()
            .get(
                self.config.namespace.as_str(),
                Some(GetOptions::new().with_count_only()),
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(response.header().map_or(0, |h| revision(h.revision())))
    }

    /// The comparison `expect` stands for, or none for [`Expect::Any`].
    fn compare(key: &str, expect: Expect) -> Option<Compare> {
        match expect {
            Expect::Any => None,
            Expect::Absent => Some(Compare::version(key, CompareOp::Equal, 0)),
            Expect::Revision(r) => Some(Compare::mod_revision(
                key,
                CompareOp::Equal,
                i64::try_from(r).unwrap_or(i64::MAX),
            )),
        }
    }

    /// Runs `op` on `key` if it is as `expect` says; on a mismatch, the conflict with the
    /// revision found. Returns etcd's answer to `op` and the revision it made.
    async fn conditional(
        &self,
        key: &str,
        full: &str,
        op: TxnOp,
        expect: Expect,
    ) -> Result<(Option<TxnOpResponse>, u64), StoreError> {
        let txn = match Self::compare(full, expect) {
            Some(compare) => Txn::new()
                .when([compare])
                .and_then([op])
                .or_else([TxnOp::get(full, None)]),
            None => Txn::new().and_then([op]),
        };
        let response = self
            .client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| self.fail(e))?;
        let made = response.header().map_or(0, |h| revision(h.revision()));
        let mut answers = response.op_responses().into_iter();
        if !response.succeeded() {
            let found = match answers.next() {
                Some(TxnOpResponse::Get(get)) => {
                    get.kvs().first().map(|kv| revision(kv.mod_revision()))
                }
                _ => None,
            };
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expect,
                found,
            });
        }
        Ok((answers.next(), made))
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            let response = self
                .client
                .kv_client()
                .get(self.full_key(key), None)
                .await
                .map_err(|e| self.fail(e))?;
            Ok(response.kvs().first().map(|kv| self.entry(kv)))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            let response = self
                .client
                .kv_client()
                .get(self.full_key(prefix), Some(options))
                .await
                .map_err(|e| self.fail(e))?;
            Ok(response.kvs().iter().map(|kv| self.entry(kv)).collect())
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a [u8], expect: Expect) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let full = self.full_key(key);
            let op = TxnOp::put(full.as_str(), value, None);
            let (_, made) = self.conditional(key, &full, op, expect).await?;
            Ok(made)
        })
    }

    fn delete<'a>(&'a self, key: &'a str, expect: Expect) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let full = self.full_key(key);
            // Deleting nothing is fine when nothing was expected.
            let expect_present = match expect {
                Expect::Absent => {
                    return match self.get(key).await? {
                        None => Ok(None),
                        Some(e) => Err(StoreError::Conflict {
                            key: key.to_string(),
                            expected: expect,
                            found: Some(e.revision),
                        }),
                    }
                }
                other => other,
            };
            let op = TxnOp::delete(full.as_str(), None);
            let (answer, made) = self.conditional(key, &full, op, expect_present).await?;
            let deleted = match answer {
                Some(TxnOpResponse::Delete(d)) => d.deleted() > 0,
                _ => false,
            };
            Ok(deleted.then_some(made))
        })
    }

    fn revision(&self) -> StoreFuture<'_, u64> {
        Box::pin(self.current_revision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_address_names_its_members() {
        let c = EtcdConfig::from_url("etcd://10.0.0.1:2379, 10.0.0.2:2379,").unwrap();
        assert_eq!(c.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(c.namespace, "/ironhorn/");
        assert!(EtcdConfig::from_url("etcd://").is_err());
        let e = EtcdConfig::from_url("http://x:2379").unwrap_err();
        assert!(e.to_string().contains("etcd://HOST:PORT"), "{e}");
    }
}
