//! Listener and Client with an authkey, in two processes.
//!
//! Run it with `cargo run --example listener_client`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::Process;
use multiproc::connection::{Address, Listener, connect_timeout};

fn client_process(address: Address, key: Vec<u8>) -> multiproc::Result<()> {
    let mut conn = connect_timeout(&address, Some(&key), Duration::from_secs(10))?;
    conn.send(&format!("hello from process {}", std::process::id()))?;
    let reply: String = conn.recv()?;
    println!("  client got {reply:?}");
    Ok(())
}

fn intruder_process(address: Address, key: Vec<u8>) -> i32 {
    match connect_timeout(&address, Some(&key), Duration::from_secs(10)) {
        Ok(_) => 0,
        Err(e) => {
            println!("  the intruder's side: {e}");
            1
        }
    }
}

/// Listener and Client with an authkey, in two processes; then a client with the wrong key.
pub fn listener_and_client() -> multiproc::Result<()> {
    let key = b"secret password".to_vec();
    let mut listener = Listener::bind_temporary(Some(&key))?;
    println!("  listening at {}", listener.address());
    let mut client = Process::new(client_process, (listener.address().clone(), key));
    client.start()?;
    let mut conn = listener.accept_timeout(Duration::from_secs(10))?;
    let greeting: String = conn.recv()?;
    println!("  listener got {greeting:?}");
    conn.send(&"welcome")?;
    client.join()?;

    let mut intruder = Process::new(intruder_process, (listener.address().clone(), b"wrong key".to_vec()));
    intruder.start()?;
    match listener.accept_timeout(Duration::from_secs(10)) {
        Err(e @ multiproc::Error::Authentication(_)) => println!("  a client with the wrong key: {e}"),
        other => println!("  unexpected: {other:?}"),
    }
    println!("  the intruder's exit code: {}", intruder.join()?);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    listener_and_client()
}
