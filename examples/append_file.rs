//! Ten processes append to one file, then count the lines.
//!
//! Ported from Python:
//!
//! - Ten processes append to one file, then the lines are counted. The file is opened by the parent
//!   and travels as a `Handle<File>`; the commented variant (ten files) is not run.
//!
//! Run it with `cargo run --example append_file`; the `tour` example runs it too.

use std::io::Write;

use multiproc::{Handle, Process};

fn append_line(file: Handle<std::fs::File>, i: u32) -> std::io::Result<()> {
    let mut file = file.into_inner();
    // O_APPEND makes each write land at the end, whatever the others do; one write per line keeps
    // lines whole (`writeln!` on a file writes each piece separately).
    file.write_all(format!("line written by process {i} (pid {})\n", std::process::id()).as_bytes())
}

/// Ten processes append to one file opened by the parent; then the parent counts the lines.
pub fn append_to_one_file() -> multiproc::Result<()> {
    let path = std::env::temp_dir().join(format!("multiproc-example-{}.txt", std::process::id()));
    let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path).map_err(io)?;
    drop(file);
    let mut children = Vec::new();
    for i in 0..10 {
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
        let mut child = Process::new(append_line, (Handle::new(file), i));
        child.start()?;
        children.push(child);
    }
    for child in &mut children {
        assert_eq!(child.join()?, 0);
    }
    let text = std::fs::read_to_string(&path).map_err(io)?;
    println!("  {} has {} lines", path.display(), text.lines().count());
    std::fs::remove_file(&path).map_err(io)?;
    Ok(())
}

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

fn main() -> multiproc::Result<()> {
    append_to_one_file()
}
