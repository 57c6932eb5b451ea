//! The fan-out rules, on in-memory replicas with injected faults and tokio's paused clock
//! (a stalled replica's timeout passes in no real time).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, Fencing, Mode, Slot, WriteQuorum};
use crate::error::EngineErrorKind;
use crate::local::LocalReplicas;
use crate::testing::{Fault, Faults, Faulty};
use crate::BlockDevice;

const SIZE: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(8);

/// An engine on `n` in-memory replicas, all RW, and the switches of their faults.
async fn engine(n: usize) -> (Engine, Vec<Arc<Faults>>) {
    engine_with(n, Fencing::default()).await
}

/// [`engine`], fenced as `fencing` says.
async fn engine_with(n: usize, fencing: Fencing) -> (Engine, Vec<Arc<Faults>>) {
    let mut slots = Vec::new();
    let mut faults = Vec::new();
    for i in 0..n {
        let (backend, switch) = Faulty::new(SIZE);
        let spec = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
        slots.push(Arc::new(Slot::new("vol", spec, Box::new(backend), TIMEOUT)));
        faults.push(switch);
    }
    let engine = Engine::with_slots(
        "vol",
        SIZE as u64,
        slots,
        Vec::new(),
        TIMEOUT,
        &LocalReplicas::new(),
        fencing,
    )
    .await
    .unwrap();
    (engine, faults)
}

fn modes(engine: &Engine) -> Vec<Mode> {
    engine.status().iter().map(|s| s.mode).collect()
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_fails_a_write_is_marked_err_and_io_goes_on() {
    let (engine, faults) = engine(3).await;
    faults[1].set(Fault::Fail);
    engine.write(vec![5; 4096], 8192, false).await.unwrap();
    assert_eq!(modes(&engine), [Mode::RW, Mode::ERR, Mode::RW]);
    assert!(engine.status()[1].reason.contains("injected failure"));

    faults[1].set(Fault::None);
    engine.write(vec![6; 4096], 0, false).await.unwrap();
    assert_eq!(engine.read(0, 12288).await.unwrap()[..4096], [6; 4096]);
    assert_eq!(engine.read(8192, 4096).await.unwrap(), vec![5; 4096]);
    assert_eq!(
        faults[1].reads.load(Ordering::SeqCst),
        0,
        "ERR serves no read"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_is_acknowledged_only_once_a_stalled_replica_answers() {
    let (engine, faults) = engine(2).await;
    faults[0].set(Fault::Stall);
    let mut write = std::pin::pin!(engine.write(vec![7; 4096], 0, false));
    assert!(
        tokio::time::timeout(TIMEOUT / 2, &mut write).await.is_err(),
        "acknowledged while a RW replica has not answered"
    );
    faults[0].release();
    write.await.unwrap();
    assert_eq!(modes(&engine), [Mode::RW, Mode::RW]);
    faults[1].set(Fault::Fail);
    assert_eq!(engine.read(0, 4096).await.unwrap(), vec![7; 4096]);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_stalls_past_the_timeout_is_failed_and_the_write_acknowledged() {
    let (engine, faults) = engine(2).await;
    faults[1].set(Fault::Stall);
    let started = tokio::time::Instant::now();
    engine.write(vec![8; 4096], 4096, true).await.unwrap();
    assert!(started.elapsed() >= TIMEOUT);
    assert_eq!(modes(&engine), [Mode::RW, Mode::ERR]);
    assert!(engine.status()[1].reason.contains("no answer"));
    // It answers later: too late, it stays failed until a rebuild.
    faults[1].release();
    engine.flush().await.unwrap();
    assert_eq!(modes(&engine), [Mode::RW, Mode::ERR]);
}

#[tokio::test(start_paused = true)]
async fn reads_come_from_rw_replicas_never_from_wo_or_err_ones() {
    let (engine, faults) = engine(3).await;
    engine.write(vec![9; 8192], 0, false).await.unwrap();
    let slots = engine.slots();
    slots[0].set_mode(Mode::WO);
    slots[1].fail("failed for the test");
    for _ in 0..10 {
        assert_eq!(engine.read(0, 8192).await.unwrap(), vec![9; 8192]);
    }
    assert_eq!(
        faults[0].reads.load(Ordering::SeqCst),
        0,
        "WO served a read"
    );
    assert_eq!(
        faults[1].reads.load(Ordering::SeqCst),
        0,
        "ERR served a read"
    );
    assert_eq!(faults[2].reads.load(Ordering::SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn a_short_read_fails_its_replica_and_is_retried_on_another() {
    let (engine, faults) = engine(2).await;
    engine.write(vec![3; 8192], 0, false).await.unwrap();
    faults[0].set(Fault::ShortRead);
    // Round-robin starts at the first replica: it answers short, the second is asked.
    assert_eq!(engine.read(0, 8192).await.unwrap(), vec![3; 8192]);
    assert_eq!(modes(&engine), [Mode::ERR, Mode::RW]);
    assert!(engine.status()[0].reason.contains("short read"));
}

#[tokio::test(start_paused = true)]
async fn a_read_no_replica_answers_in_full_fails_cleanly() {
    let (engine, faults) = engine(2).await;
    for f in &faults {
        f.set(Fault::ShortRead);
    }
    assert!(engine.read(0, 4096).await.is_err());
    assert_eq!(modes(&engine), [Mode::ERR, Mode::ERR]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_control_call_marks_no_replica_err() {
    let (engine, faults) = engine(2).await;
    faults[0].set(Fault::Refuse);
    let e = engine
        .snapshot("snap", Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), EngineErrorKind::Refused);
    assert!(e.to_string().contains("127.0.0.1:9000"), "{e}");
    assert_eq!(modes(&engine), [Mode::RW, Mode::RW]);

    // A failure, unlike a refusal, marks the replica ERR; the others carry on.
    faults[0].set(Fault::Fail);
    engine.snapshot("snap", Default::default()).await.unwrap();
    assert_eq!(modes(&engine), [Mode::ERR, Mode::RW]);
}

#[tokio::test(start_paused = true)]
async fn io_fails_once_the_last_rw_replica_fails() {
    let (engine, faults) = engine(2).await;
    faults[0].set(Fault::Fail);
    engine.write(vec![1; 4096], 0, false).await.unwrap();
    faults[1].set(Fault::Fail);
    assert!(engine.write(vec![2; 4096], 0, false).await.is_err());
    assert_eq!(modes(&engine), [Mode::ERR, Mode::ERR]);
    assert!(engine.read(0, 4096).await.is_err());
    assert!(engine.flush().await.is_err());
    let e = engine
        .snapshot("snap", Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), EngineErrorKind::Failed);
}

/// With a majority quorum, an engine that has lost most of its replicas (as a node cut off
/// from the others has) acknowledges no write or flush, though one replica still takes it;
/// once the failed ones are removed from it (the manager's decision), it serves again.
#[tokio::test(start_paused = true)]
async fn with_a_majority_quorum_a_write_most_replicas_miss_is_not_acknowledged() {
    let fencing = Fencing {
        generation: 0,
        quorum: WriteQuorum::Majority,
        min_claimed: 0,
    };
    let (strict, faults) = engine_with(3, fencing).await;
    assert_eq!(strict.write_quorum(), 2);
    faults[1].set(Fault::Fail);
    strict.write(vec![1; 4096], 0, false).await.unwrap();
    faults[2].set(Fault::Stall);
    let refused = strict.write(vec![2; 4096], 0, false).await.unwrap_err();
    assert!(refused.to_string().contains("2 must"), "{refused}");
    assert!(strict.flush().await.is_err());
    assert_eq!(modes(&strict), [Mode::RW, Mode::ERR, Mode::ERR]);
    // With the default rule the last replica would have acknowledged it.
    let (lenient, faults) = engine(3).await;
    faults[1].set(Fault::Fail);
    faults[2].set(Fault::Fail);
    lenient.write(vec![2; 4096], 0, false).await.unwrap();
    // The failed replicas removed, one replica is a majority again.
    for address in ["127.0.0.1:9001", "127.0.0.1:9002"] {
        strict.remove_replica(address).await.unwrap();
    }
    assert_eq!(strict.write_quorum(), 1);
    strict.write(vec![3; 4096], 0, false).await.unwrap();
    assert_eq!(strict.read(0, 4096).await.unwrap(), vec![3; 4096]);
}
