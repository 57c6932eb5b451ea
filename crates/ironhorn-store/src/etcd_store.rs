//! [`EtcdStore`]: the state in etcd (v3 API), for several managers. Keys live under a
//! namespace (`/ironhorn/` by default) so the cluster can be shared; an entry's revision is
//! etcd's `mod_revision` and the store's revision etcd's, so both keep growing across every
//! manager. A conditional write is one etcd transaction comparing the key's `mod_revision`
//! (or its absence), so two managers can never both win the same update. Every call has a
//! deadline: an etcd that has lost its quorum gives a clear error instead of a hang.
//!
//! Calls go to one member at a time ([`Members`]): one that cannot be reached is skipped
//! for the next, and one that does not answer in time is left for the next call, so a
//! member cut off costs at most one failed call rather than every call the balancer sends
//! its way.
//!
//! One etcd watch on the namespace feeds [`Store::changes`] and a copy of the namespace in
//! memory that answers reads while it is current ([`crate::etcd_mirror`]); it reconnects
//! by itself.
//! Elections are in [`crate::etcd_election`]; a term's store adds one comparison to every
//! write: the leader key still has the create revision it had when the term began.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse,
};
use tokio::sync::watch;

use crate::etcd_mirror::{self, revision, Mirror};
use crate::{Entry, Expect, Store, StoreError, StoreFuture, Term};

/// Where and how to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `host:port` (or `http://host:port`) of each member.
    pub endpoints: Vec<String>,
    /// Prefix of every key this store writes, e.g. `/ironhorn/`.
    pub namespace: String,
    /// The longest a call may take before it fails (quorum lost, members unreachable).
    pub timeout: Duration,
    /// How long a leader's lease lasts without renewal: how soon another manager takes
    /// over from one that died.
    pub lease_ttl: Duration,
    /// TLS towards etcd, when its members serve HTTPS (`--etcd-ca` and friends).
    pub tls: Option<EtcdTls>,
}

/// The files of a TLS connection to etcd (PEM): the CA that signed the members'
/// certificates, and this client's certificate and key when etcd asks for one
/// (`--client-cert-auth`).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    pub ca: std::path::PathBuf,
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
}

impl EtcdTls {
    /// tonic's TLS settings from the files.
    fn options(&self) -> Result<etcd_client::TlsOptions, StoreError> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).map_err(|e| StoreError::Backend {
                path: path.display().to_string(),
                source: format!("reading the etcd {what}: {e}").into(),
            })
        };
        let mut options = etcd_client::TlsOptions::new().ca_certificate(
            etcd_client::Certificate::from_pem(read(&self.ca, "CA certificate")?),
        );
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                options = options.identity(etcd_client::Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            (None, None) => {}
            _ => {
                return Err(StoreError::Backend {
                    path: self.ca.display().to_string(),
                    source: "give both the etcd client certificate and its key, or neither".into(),
                })
            }
        }
        Ok(options)
    }
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
            lease_ttl: Duration::from_secs(3),
            tls: None,
        })
    }
}

fn invalid(url: &str, why: &str) -> StoreError {
    StoreError::Backend {
        path: url.to_string(),
        source: why.into(),
    }
}

/// How long connecting to a member may take: members are on the cluster's network, so one
/// that does not accept a connection within this is skipped for the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often an idle connection to a member is pinged (HTTP/2 keep-alive).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(6);

/// A client per etcd member, and the member calls go to first.
pub(crate) struct Members {
    clients: Vec<(String, Client)>,
    preferred: AtomicUsize,
    /// The longest one call may take.
    timeout: Duration,
}

/// Whether a call cannot have been applied: no connection to the member could be made, or
/// the member said it has no leader (with `require_leader`, before doing anything). Trying
/// it on another member cannot apply it twice. A connection that broke mid-call is not
/// such a case: the call may have been applied.
fn unreachable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            let message = s.message();
            s.code() == tonic::Code::Unavailable
                && (message.contains("connect error")
                    || message.contains("error trying to connect")
                    || message == "etcdserver: no leader")
        }
        _ => false,
    }
}

/// Whether a call got no answer in time (a member cut off mid-connection, or no quorum).
fn timed_out(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if matches!(s.code(), tonic::Code::Cancelled | tonic::Code::DeadlineExceeded))
}

impl Members {
    /// The client of the member calls go to first.
    pub(crate) fn client(&self) -> Client {
        let i = self.preferred.load(Ordering::Relaxed) % self.clients.len();
        self.clients[i].1.clone()
    }

    /// `call` on the preferred member; on the next ones while a member cannot be reached.
    /// A call that timed out is not repeated (it may have been applied), but the next call
    /// goes to the next member. For writes.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.run(call, false).await
    }

    /// [`Members::call`] for a call that changes nothing: it is also repeated, on the next
    /// member, after a timeout or while etcd elects a leader (`etcdserver: leader changed`),
    /// until the call's deadline.
    pub(crate) async fn read<T, F, Fut>(&self, call: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.run(call, true).await
    }

    async fn run<T, F, Fut>(&self, call: F, idempotent: bool) -> Result<T, etcd_client::Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let count = self.clients.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let deadline = tokio::time::Instant::now() + self.timeout;
        // A read leaves time for another member after one that does not answer.
        let per_attempt = if idempotent && count > 1 {
            self.timeout / 2
        } else {
            self.timeout
        };
        let mut attempt = 0;
        loop {
            let i = (first + attempt) % count;
            let (endpoint, client) = &self.clients[i];
            let started = tokio::time::Instant::now();
            let limit = (started + per_attempt).min(deadline);
            let answer = tokio::time::timeout_at(limit, call(client.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(etcd_client::Error::GRpcStatus(
                        tonic::Status::deadline_exceeded(format!(
                            "no answer from {endpoint} within {:?}",
                            limit.saturating_duration_since(started)
                        )),
                    ))
                });
            let e = match answer {
                Ok(answer) => {
                    if i != first {
                        tracing::info!(member = %endpoint, "etcd calls go to this member now");
                        self.preferred.store(i, Ordering::Relaxed);
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            if timed_out(&e) && count > 1 {
                let _ = self.preferred.compare_exchange(
                    first,
                    (i + 1) % count,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            let again = if idempotent {
                unreachable(&e) || timed_out(&e) || unavailable(&e)
            } else {
                unreachable(&e) && attempt + 1 < count
            };
            if !again || tokio::time::Instant::now() >= deadline {
                return Err(e);
            }
            tracing::debug!(member = %endpoint, error = %e, "etcd call failed: trying again");
            attempt += 1;
            if attempt % count == 0 {
                // Every member was tried: give etcd a moment (an election, say).
                tokio::time::sleep_until(
                    (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline),
                )
                .await;
            }
        }
    }
}

/// Whether etcd answered that it cannot serve now (no leader, leader changed).
fn unavailable(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable)
}

/// The store; cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) members: Arc<Members>,
    pub(crate) config: EtcdConfig,
    /// For a term's store: what every write also requires.
    pub(crate) fence: Option<Fence>,
    changes: watch::Receiver<u64>,
    mirror: Mirror,
    /// Stops the watch behind `changes` when the last clone goes.
    _watching: Arc<AbortOnDrop>,
}

/// The condition of a term's writes: the leader key (full name) was created at `term`.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub key: String,
    pub term: i64,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("namespace", &self.config.namespace)
            .finish()
    }
}

impl EtcdStore {
    /// Connects to the members of `config` and checks that etcd answers.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new()
            // No per-request timeout here: gRPC would send it to etcd as the deadline of the
            // watch and keep-alive streams too, which etcd would then end every few seconds.
            // Calls are bounded by `Members::call` instead.
            .with_connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            // A member cut off is noticed within 9 s, and its connection left for the others'.
            // Not more often: etcd closes the connection of a client that pings more often
            // than its --grpc-keepalive-min-time (5 s by default), and with it every watch.
            .with_keep_alive(KEEPALIVE_INTERVAL, Duration::from_secs(3))
            // Only while calls or streams are open: etcd refuses pings on an idle connection
            // (the members calls do not go to) and would close it again and again.
            .with_keep_alive_while_idle(false)
            // A member cut off from the others says so at once ("no leader"), and ends the
            // watches it serves, rather than leaving them silent: the call goes to the next
            // member, and the watch starts again there.
            .with_require_leader(true);
        let mut endpoints = config.endpoints.clone();
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls.options()?);
            endpoints = endpoints
                .iter()
                .map(|e| {
                    let bare = e
                        .trim_start_matches("http://")
                        .trim_start_matches("https://");
                    format!("https://{bare}")
                })
                .collect();
        }
        let mut clients = Vec::new();
        for endpoint in &endpoints {
            // Connects lazily: a member down now is tried again on each call.
            let client = Client::connect([endpoint], Some(options.clone()))
                .await
                .map_err(|e| Self::fail_with(&config, e))?;
            clients.push((endpoint.clone(), client));
        }
        let members = Arc::new(Members {
            clients,
            preferred: AtomicUsize::new(0),
            timeout: config.timeout,
        });
        let mirror = Mirror::default();
        let now = etcd_mirror::load(&members, &config.namespace, &mirror)
            .await
            .map_err(|e| Self::fail_with(&config, e))?;
        let (changed, changes) = watch::channel(now);
        let watching = tokio::spawn(etcd_mirror::follow(
            members.clone(),
            config.namespace.clone(),
            mirror.clone(),
            changed,
        ));
        Ok(EtcdStore {
            members,
            config,
            fence: None,
            changes,
            mirror,
            _watching: Arc::new(AbortOnDrop(watching)),
        })
    }

    /// How many reads the in-memory copy of the namespace answered (the others went to
    /// etcd: something had changed since the copy last heard).
    pub fn reads_from_memory(&self) -> u64 {
        self.mirror.answered()
    }

    /// This store with every write also requiring `fence`.
    pub(crate) fn fenced(&self, fence: Fence) -> EtcdStore {
        EtcdStore {
            fence: Some(fence),
            ..self.clone()
        }
    }

    pub(crate) fn leader_key(&self) -> String {
        self.full_key(crate::etcd_election::LEADER_KEY)
    }

    fn fail_with(config: &EtcdConfig, e: etcd_client::Error) -> StoreError {
        StoreError::Unavailable {
            path: format!("etcd://{}", config.endpoints.join(",")),
            source: Box::new(e),
        }
    }

    pub(crate) fn fail(&self, e: etcd_client::Error) -> StoreError {
        Self::fail_with(&self.config, e)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.config.namespace)
    }

    /// An etcd key-value as an entry (its key without the namespace).
    fn entry(&self, kv: &etcd_client::KeyValue) -> Entry {
        etcd_mirror::entry(&self.config.namespace, kv)
    }

    async fn current_revision(&self) -> Result<u64, StoreError> {
        let namespace = self.config.namespace.as_str();
        let response = self
            .members
            .read(|c| async move {
                c.kv_client()
                    .get(namespace, Some(GetOptions::new().with_count_only()))
                    .await
            })
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

    /// Runs `op` on `key` if it is as `expect` says (and, in a term's store, while the term
    /// holds); on a mismatch, the conflict with the revision found, or the fence that
    /// failed. Returns etcd's answer to `op` and the revision it made.
    async fn conditional(
        &self,
        key: &str,
        full: &str,
        op: TxnOp,
        expect: Expect,
    ) -> Result<(Option<TxnOpResponse>, u64), StoreError> {
        let mut compares: Vec<Compare> = Self::compare(full, expect).into_iter().collect();
        if let Some(fence) = &self.fence {
            compares.push(Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.term,
            ));
        }
        let txn = if compares.is_empty() {
            Txn::new().and_then([op])
        } else {
            let mut found = vec![TxnOp::get(full, None)];
            if let Some(fence) = &self.fence {
                found.push(TxnOp::get(fence.key.as_str(), None));
            }
            Txn::new().when(compares).and_then([op]).or_else(found)
        };
        let response = self
            .members
            .call(|c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await
            .map_err(|e| self.fail(e))?;
        let made = response.header().map_or(0, |h| revision(h.revision()));
        let mut answers = response.op_responses().into_iter();
        if !response.succeeded() {
            let first_kv = |answer: Option<TxnOpResponse>| match answer {
                Some(TxnOpResponse::Get(get)) => get.kvs().first().cloned(),
                _ => None,
            };
            let found = first_kv(answers.next());
            if let Some(fence) = &self.fence {
                let leader = first_kv(answers.next());
                if leader.map(|kv| kv.create_revision()) != Some(fence.term) {
                    return Err(StoreError::Fenced {
                        term: revision(fence.term),
                    });
                }
            }
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expect,
                found: found.map(|kv| revision(kv.mod_revision())),
            });
        }
        Ok((answers.next(), made))
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Entry>> {
        Box::pin(async move {
            let now = self.current_revision().await?;
            if let Some(found) = self.mirror.get(key, now) {
                return Ok(found);
            }
            let full = self.full_key(key);
            let response = self
                .members
                .read(|c| {
                    let full = full.as_str();
                    async move { c.kv_client().get(full, None).await }
                })
                .await
                .map_err(|e| self.fail(e))?;
            Ok(response.kvs().first().map(|kv| self.entry(kv)))
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<Entry>> {
        Box::pin(async move {
            let now = self.current_revision().await?;
            if let Some(found) = self.mirror.list(prefix, now) {
                return Ok(found);
            }
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Ascend);
            let full = self.full_key(prefix);
            let response = self
                .members
                .read(|c| {
                    let (full, options) = (full.as_str(), options.clone());
                    async move { c.kv_client().get(full, Some(options)).await }
                })
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

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    fn campaign<'a>(&'a self, candidate: &'a str) -> StoreFuture<'a, Term> {
        Box::pin(crate::etcd_election::campaign(self, candidate))
    }

    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn leader(&self) -> StoreFuture<'_, Option<String>> {
        Box::pin(async move {
            let key = self.leader_key();
            let response = self
                .members
                .read(|c| {
                    let key = key.as_str();
                    async move { c.kv_client().get(key, None).await }
                })
                .await
                .map_err(|e| self.fail(e))?;
            Ok(response
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
        })
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
