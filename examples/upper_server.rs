//! A Process subclass serving requests over a duplex pipe.
//!
//! Run it with `cargo run --example upper_server`; the `tour` example runs it too.

use multiproc::{Connection, Process, Run};
use serde::{Deserialize, Serialize};

/// A request to [`UpperServer`].
#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    /// Upper-case this text.
    Upper(String),
    /// Stop serving.
    Stop,
}

/// A `Process` subclass (a [`Run`] type) that serves upper-casing requests over a duplex pipe
/// until it is told to stop; it answers how many it served.
#[derive(Serialize, Deserialize)]
pub struct UpperServer {
    conn: Connection,
}

impl Run for UpperServer {
    type Output = multiproc::Result<()>;
    fn run(mut self) -> multiproc::Result<()> {
        let mut served = 0u32;
        loop {
            match self.conn.recv::<Request>()? {
                Request::Upper(text) => {
                    self.conn.send(&text.to_uppercase())?;
                    served += 1;
                }
                Request::Stop => {
                    self.conn.send(&format!("served {served} requests, stopping"))?;
                    return Ok(());
                }
            }
        }
    }
}

pub fn upper_case_server() -> multiproc::Result<()> {
    let (mut client, server_end) = multiproc::pipe()?;
    let mut server = Process::from_run(UpperServer { conn: server_end });
    server.start()?;
    for word in ["hello", "multiproc", "ünïcode"] {
        client.send(&Request::Upper(word.into()))?;
        println!("  {word:?} -> {:?}", client.recv::<String>()?);
    }
    client.send(&Request::Stop)?;
    println!("  server: {}", client.recv::<String>()?);
    println!("  server exit code: {}", server.join()?);
    Ok(())
}

fn main() -> multiproc::Result<()> {
    upper_case_server()
}
