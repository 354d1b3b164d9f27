//! A process-per-connection TCP echo server.
//!
//! Ported from Python:
//!
//! - One `Process(target=talk)` per accepted connection. Three client processes; the server stops
//!   after three connections.
//!
//! Run it with `cargo run --example tcp_echo`; the `tour` example runs it too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use multiproc::{Handle, Process};

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

fn talk(conn: Handle<TcpStream>, client: String) -> std::io::Result<()> {
    let mut conn = conn.into_inner();
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        println!("  server process {} got {:?} from {client}", std::process::id(), line.trim_end());
        conn.write_all(line.to_uppercase().as_bytes())?;
        line.clear();
    }
    Ok(())
}

fn client(port: u16, name: String) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    for word in ["hello", "bye"] {
        writeln!(stream, "{word} from {name}")?;
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        println!("  {name} got back {:?}", answer.trim_end());
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(())
}

/// A process-per-connection TCP echo server on loopback: each accepted socket is handed to a new
/// process. Bounded: it serves three clients and stops.
pub fn tcp_echo_server() -> multiproc::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let mut clients: Vec<Process> = (0..3).map(|i| Process::new(client, (port, format!("client-{i}")))).collect();
    for c in &mut clients {
        c.start()?;
    }
    let mut handlers = Vec::new();
    for _ in 0..3 {
        let (conn, addr) = listener.accept().map_err(io)?;
        let mut handler = Process::new(talk, (Handle::new(conn), addr.to_string()));
        handler.start()?; // the parent's copy of the socket closes at the end of this iteration
        handlers.push(handler);
    }
    for p in clients.iter_mut().chain(handlers.iter_mut()) {
        assert_eq!(p.join()?, 0, "{p}");
    }
    println!("  served 3 clients, one process each");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    tcp_echo_server()
}
