//! Connections that never finish saying anything: no byte at all, headers that never end.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

/// Connections that never finish saying anything: no byte at all, headers that never end.
/// Before issue 16 a connection that sent nothing was held for ever (hyper waits for the first
/// bytes to tell HTTP/1.1 from HTTP/2 with no deadline), so a few thousand of them would use up
/// the server's file descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_silent_and_unfinished_connections_are_closed() -> Result<()> {
    const CONNECTIONS: usize = 400;
    let server = TestServer::start(&[])?;
    let addr = server.addr()?;
    let fds = || -> Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", server.pid()))?.count())
    };
    let before = fds()?;
    let started = Instant::now();
    let mut held = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        // One after another, as a patient attacker would (400 SYNs at once would overflow the
        // listen queue, and a connection the kernel drops there is not the server's to close).
        let mut stream = TcpStream::connect(addr).await?;
        held.spawn(async move {
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await?;
            }
            // Held open by us until the server closes it (EOF or reset), within a deadline.
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            ensure!(closed.is_ok(), "connection {i} was still open after 30 s");
            Ok::<_, anyhow::Error>(())
        });
    }
    // Meanwhile the server answers others at once.
    let health = reqwest::get(server.url("/healthz")).await?;
    ensure!(health.status() == 200, "healthz: {}", health.status());
    let during = fds()?;
    while let Some(done) = held.join_next().await {
        done??;
    }
    let took = started.elapsed();
    let after = fds()?;
    println!(
        "{CONNECTIONS} silent or unfinished connections: the server held {during} descriptors \
         (from {before}); all closed by the server within {took:?}; {after} descriptors after"
    );
    ensure!(after <= before + 2, "descriptors: {after}, were {before}");
    Ok(())
}
