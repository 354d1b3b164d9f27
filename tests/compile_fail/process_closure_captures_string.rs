// mode: check
// expect: cannot be a process target
// expect: TargetCapturesNothing
// expect: Process::fork
// reject: String: Copy
use multiproc::Process;

fn main() -> multiproc::Result<()> {
    let text = String::from("captured");
    let mut p = Process::new(move || println!("{text}"), ());
    p.start()?;
    p.join()?;
    Ok(())
}
