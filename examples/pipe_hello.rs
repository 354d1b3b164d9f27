//! Pipe: the main process sends, the child prints.
//!
//! Ported from Python:
//!
//! - `Pipe()`, the main process sends `'有点困了'`, the child prints it. The main process also joins
//!   the child (the original leaves it to exit).
//! - The child sends `['hi!! I am Python']`, the parent prints it.
//!
//! Run it with `cargo run --example pipe_hello`; the `tour` example runs it too.

use multiproc::{Connection, Process};

fn print_message_from_main(mut conn: Connection) -> multiproc::Result<()> {
    let message: String = conn.recv()?;
    println!("  I am the child process");
    println!("  message from the main process: {message}");
    Ok(())
}

/// The main process sends a message through a duplex pipe; the child prints it.
pub fn pipe_to_child() -> multiproc::Result<()> {
    let (mut conn1, conn2) = multiproc::pipe()?;
    let mut p1 = Process::new(print_message_from_main, (conn2,));
    p1.start()?;
    conn1.send("有点困了 (a little sleepy)")?;
    println!("  I am the main process");
    p1.join()?;
    Ok(())
}

fn say_hi(mut conn: Connection) -> multiproc::Result<()> {
    conn.send(&vec!["hi!! I am Python"])?;
    conn.close();
    Ok(())
}

/// The child sends a list through the pipe; the parent prints it.
pub fn pipe_from_child() -> multiproc::Result<()> {
    let (mut parent_conn, child_conn) = multiproc::pipe()?;
    let mut p = Process::new(say_hi, (child_conn,));
    p.start()?;
    println!("  {:?}", parent_conn.recv::<Vec<String>>()?);
    p.join()?;
    Ok(())
}

fn main() -> multiproc::Result<()> {
    pipe_to_child()?;
    pipe_from_child()
}
