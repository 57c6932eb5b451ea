//! A connection that starts in the transmission phase, as the kernel NBD driver's does (it
//! learns the size and flags through netlink): raw requests over a socket pair, written the
//! way the driver writes them, answered by `serve_connected`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ironhorn_engine::ReplicaDevice;
use ironhorn_frontend::nbd::{serve_connected, Export};
use ironhorn_replica::Replica;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const REQUEST_MAGIC: u32 = 0x2560_9513;
const REPLY_MAGIC: u32 = 0x6744_6698;

fn request(kind: u16, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(28);
    b.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&cookie.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b
}

async fn reply(stream: &mut tokio::net::UnixStream, cookie: u64) -> u32 {
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(
        u32::from_be_bytes(header[0..4].try_into().unwrap()),
        REPLY_MAGIC
    );
    assert_eq!(
        u64::from_be_bytes(header[8..16].try_into().unwrap()),
        cookie
    );
    u32::from_be_bytes(header[4..8].try_into().unwrap())
}

#[tokio::test]
async fn the_transmission_phase_is_served_without_a_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let replica = Replica::create(&tmp.path().join("vol-0a0b0c0d"), 1 << 20).unwrap();
    let export = Arc::new(Export::new(
        "vol",
        "test",
        Arc::new(ReplicaDevice::new(replica)),
    ));
    assert_ne!(export.transmission_flags() & 1, 0, "HAS_FLAGS");
    let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(serve_connected(server, export.clone(), stop.clone()));

    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    let mut write = request(1, 1, 4096, data.len() as u32);
    write.extend_from_slice(&data);
    client.write_all(&write).await.unwrap();
    assert_eq!(reply(&mut client, 1).await, 0);
    client.write_all(&request(3, 2, 0, 0)).await.unwrap();
    assert_eq!(reply(&mut client, 2).await, 0, "flush");
    client.write_all(&request(0, 3, 4096, 8192)).await.unwrap();
    assert_eq!(reply(&mut client, 3).await, 0);
    let mut back = vec![0u8; 8192];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(back, data);
    assert_eq!(
        export.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // Out of range: an error, and the connection goes on.
    client
        .write_all(&request(0, 4, 1 << 20, 4096))
        .await
        .unwrap();
    assert_ne!(reply(&mut client, 4).await, 0);
    client.write_all(&request(2, 5, 0, 0)).await.unwrap();
    serving.await.unwrap();
    assert_eq!(
        export.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}
