// mode: build
// expect: a process target must be a fn item or a closure that captures nothing
// expect: Process::fork
// expect: process_closure_captures_integer.rs:9
use multiproc::Process;

fn main() -> multiproc::Result<()> {
    let times = 3u32;
    let mut p = Process::new(move || println!("{times}"), ());
    p.start()?;
    p.join()?;
    Ok(())
}
