//! A one-way pipe, Pipe(duplex=False).
//!
//! Ported from Python:
//!
//! - `Pipe(duplex=False)`: only `child_conn` sends. The direction is in the type: `reader.send(..)`
//!   does not compile.
//!
//! Run it with `cargo run --example simplex_pipe`; the `tour` example runs it too.

use multiproc::connection::{ReadOnly, WriteOnly};
use multiproc::{Connection, Process};

fn report_squares(mut out: Connection<WriteOnly>, n: u64) -> multiproc::Result<()> {
    for i in 1..=n {
        out.send(&(i, i * i))?;
    }
    Ok(())
}

/// `Pipe(duplex=False)`: only the child's end can send, only the parent's can receive.
/// (`reader.send(..)` does not compile: the direction is in the type.)
pub fn simplex_pipe() -> multiproc::Result<()> {
    let (mut reader, writer): (Connection<ReadOnly>, Connection<WriteOnly>) = multiproc::simplex_pipe()?;
    let mut p = Process::new(report_squares, (writer, 4u64));
    p.start()?;
    // The parent's copy of the writer went to the child; once the child exits, the reader sees
    // end of file.
    loop {
        match reader.recv::<(u64, u64)>() {
            Ok((i, square)) => println!("  {i}² = {square}"),
            Err(multiproc::Error::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    p.join()?;
    println!("  the writer closed: end of file");
    Ok(())
}

fn main() -> multiproc::Result<()> {
    simplex_pipe()
}
