//! A rebuild target built from a source replica with the rebuild operations reads the same.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ironhorn_replica::{Replica, SnapshotSpec};

#[test]
fn a_target_laid_out_and_filled_from_a_source_reads_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src-00000001");
    let dst_dir = tmp.path().join("dst-00000002");
    let mut src = Replica::create(&src_dir, 1 << 20).unwrap();
    src.write_at(&[1u8; 8192], 0).unwrap();
    src.snapshot(&SnapshotSpec::user("a")).unwrap();
    src.write_at(&[2u8; 4096], 4096).unwrap();
    src.write_at(&[0u8; 4096], 65536).unwrap();
    src.snapshot(&SnapshotSpec {
        name: "sys".into(),
        ..SnapshotSpec::default()
    })
    .unwrap();

    let mut dst = Replica::create(&dst_dir, 1 << 20).unwrap();
    let layers: Vec<_> = src
        .layer_infos()
        .into_iter()
        .filter(|l| !l.is_head)
        .collect();
    dst.prepare_rebuild("volume-snap-sys.img", &layers).unwrap();
    assert!(dst.layout().volume_meta.rebuilding);
    // Writes that arrive while rebuilding land in the new head.
    src.write_at(&[3u8; 4096], 8192).unwrap();
    dst.write_at(&[3u8; 4096], 8192).unwrap();
    for layer in &layers {
        for (start, end) in src.layer_extents(&layer.file).unwrap() {
            let mut buf = vec![0u8; (end - start) as usize];
            src.read_layer(&layer.file, &mut buf, start).unwrap();
            dst.write_layer(&layer.file, &buf, start).unwrap();
        }
    }
    dst.finish_rebuild(src.revision()).unwrap();
    assert!(!dst.layout().volume_meta.rebuilding);
    assert_eq!(dst.revision(), src.revision());
    for layer in &layers {
        assert_eq!(
            data_ranges(&src_dir.join(&layer.file)),
            data_ranges(&dst_dir.join(&layer.file)),
            "{}",
            layer.file
        );
        assert_eq!(
            src.layer_checksum(&layer.file).unwrap(),
            dst.layer_checksum(&layer.file).unwrap()
        );
    }
    src.close().unwrap();
    dst.close().unwrap();
    for view in ["volume-head", "a", "sys"] {
        assert_eq!(
            view_hash(&src_dir, Some(view), 1 << 20),
            view_hash(&dst_dir, Some(view), 1 << 20),
            "{view}"
        );
    }
}

/// A large layer write the server refuses (the replica is not rebuilding) costs the sender
/// only that request: its data is drained from the socket, and the next frame on the same
/// connection is read in step.
#[test]
fn a_refused_large_layer_write_leaves_the_connection_in_step() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use ironhorn_proto::replica::{self as wire, Header, Kind};
    use ironhorn_replica::SharedReplica;
    use ironhorn_runtime::net::{Addr, Listener};

    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::create(&tmp.path().join("r"), 16 << 20).unwrap();
    let socket = tmp.path().join("r.sock");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = runtime
        .block_on(Listener::bind(&Addr::Unix(socket.clone())))
        .unwrap();
    let server = runtime.spawn(ironhorn_replica::server::serve(
        listener,
        Arc::new(SharedReplica::new(replica)),
        shutdown.clone(),
    ));

    let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let data = vec![7u8; 3 << 20];
    let mut payload = wire::layer_payload_prefix("volume-head-000.img");
    payload.extend_from_slice(&data);
    let frame = |kind, id, payload: &[u8]| {
        let header = Header {
            kind,
            id,
            offset: 0,
            len: 0,
            flags: 0,
            payload_len: payload.len() as u32,
        };
        let mut out = header.encode().to_vec();
        out.extend_from_slice(payload);
        out
    };
    let reply = |conn: &mut std::os::unix::net::UnixStream| {
        let mut raw = [0u8; wire::HEADER_LEN];
        conn.read_exact(&mut raw).unwrap();
        let header = Header::decode(&raw).unwrap();
        let mut body = vec![0u8; header.payload_len as usize];
        conn.read_exact(&mut body).unwrap();
        (header, body)
    };
    conn.write_all(&frame(Kind::WriteLayer, 1, &payload))
        .unwrap();
    conn.write_all(&frame(Kind::Ping, 2, &[])).unwrap();
    let (refused, body) = reply(&mut conn);
    assert_eq!((refused.kind, refused.id), (Kind::ResponseErr, 1));
    let error = wire::decode_error(&body);
    assert!(
        error.message.contains("only taken while rebuilding"),
        "{}",
        error.message
    );
    let (pong, _) = reply(&mut conn);
    assert_eq!((pong.kind, pong.id), (Kind::ResponseOk, 2));

    drop(conn);
    shutdown.cancel();
    runtime.block_on(server).unwrap();
}

#[test]
fn the_heads_allocation_is_what_it_holds_now() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Replica::create(&tmp.path().join("v-00000001"), 1 << 20).unwrap();
    r.write_at(&[1u8; 8192], 0).unwrap();
    r.snapshot(&SnapshotSpec::user("a")).unwrap();
    let head = |r: &Replica| r.layer_infos().into_iter().find(|l| l.is_head).unwrap();
    assert_eq!(head(&r).allocated, 0, "nothing written since the snapshot");
    r.write_at(&[2u8; 4096], 65536).unwrap();
    assert!(
        head(&r).allocated >= 4096,
        "a write since the snapshot shows (what recurring snapshot jobs look at)"
    );
    r.close().unwrap();
}
