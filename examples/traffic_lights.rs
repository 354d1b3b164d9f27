//! Event: a traffic light and ten cars.
//!
//! Ported from Python:
//!
//! - Ten car processes and a traffic-light process. The light toggles seven times and then stays
//!   green (the original's toggles forever); the commented-out police cars are not run.
//!
//! Run it with `cargo run --example traffic_lights`; the `tour` example runs it too.

use std::time::Duration;

use multiproc::{Event, Process};

fn traffic_light(green: Event, toggles: u32, interval_ms: u64) {
    for _ in 0..toggles {
        sleep_ms(interval_ms); // 5 s in the original
        if green.is_set() {
            green.clear();
            println!("  ###### the light turns red");
        } else {
            green.set();
            println!("  ****** the light turns green");
        }
    }
    // The original's light changes forever; this one stops, on green, so that every car gets through.
    if !green.is_set() {
        green.set();
        println!("  ****** the light turns green and stays green");
    }
}

fn car(green: Event, n: u32) {
    loop {
        // (The original's car spins without pausing if it arrives on green; here it just goes.)
        if !green.is_set() {
            println!("  red light: car {n} waits");
            green.wait();
            println!("  car {n} sees the green light");
        }
        sleep_ms(random_in(1, 4)); // pulling away, 2-4 s in the original
        if !green.is_set() {
            println!("  car {n}: red again before it was across, back in line");
            continue;
        }
        println!("  car {n} drove off");
        return;
    }
}

/// A light process toggles an event (set: green, clear: red); ten car processes,
/// arriving one by one, wait for green and drive off.
pub fn traffic_lights() -> multiproc::Result<()> {
    let green = Event::new()?; // starts red
    let mut light = Process::new(traffic_light, (green.clone(), 7, 10));
    light.start()?;
    let mut cars = Vec::new();
    for n in 0..10 {
        sleep_ms(random_in(0, 8)); // cars do not all come at once (1-3 s in the original)
        let mut c = Process::new(car, (green.clone(), n));
        c.start()?;
        cars.push(c);
    }
    join_all(&mut cars)?;
    join_all(std::slice::from_mut(&mut light))?;
    println!("  all ten cars drove off");
    Ok(())
}

/// Stands in for the seconds the Python original sleeps to simulate work.
fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A random number in `low..=high` (the originals' `random.randint`).
fn random_in(low: u64, high: u64) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty());
    low + u64::from_ne_bytes(bytes) % (high - low + 1)
}

/// Joins every child and checks that each exited with 0.
fn join_all(children: &mut [Process]) -> multiproc::Result<()> {
    for child in children {
        let code = child.join()?;
        assert_eq!(code, 0, "{child} failed");
    }
    Ok(())
}

fn main() -> multiproc::Result<()> {
    traffic_lights()
}
