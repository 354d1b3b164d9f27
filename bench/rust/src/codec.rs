//! `mpbench codec`: postcard against bitcode on typical values (how the wire codec was chosen).

use std::time::Instant;

#[derive(serde::Serialize, serde::Deserialize, Clone)]
struct Small {
    id: u64,
    name: String,
    values: Vec<i32>,
    flag: bool,
}

fn codec() {
    let small = Small { id: 123456, name: "worker-7".into(), values: vec![1, -2, 3, 400], flag: true };
    let big = vec![7u8; 1 << 20];
    let time = |label: &str, iters: u32, mut f: Box<dyn FnMut()>| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        println!("{label}: {:.1} ns", t.elapsed().as_secs_f64() * 1e9 / f64::from(iters));
    };
    let s = small.clone();
    time(
        "postcard small struct",
        200_000,
        Box::new(move || {
            let b = postcard::to_stdvec(&s).unwrap();
            let _: Small = postcard::from_bytes(&b).unwrap();
        }),
    );
    let s = small.clone();
    time(
        "bitcode  small struct",
        200_000,
        Box::new(move || {
            let b = bitcode::serialize(&s).unwrap();
            let _: Small = bitcode::deserialize(&b).unwrap();
        }),
    );
    time(
        "postcard u64",
        1_000_000,
        Box::new(|| {
            let b = postcard::to_stdvec(&42u64).unwrap();
            let _: u64 = postcard::from_bytes(&b).unwrap();
        }),
    );
    time(
        "bitcode  u64",
        1_000_000,
        Box::new(|| {
            let b = bitcode::serialize(&42u64).unwrap();
            let _: u64 = bitcode::deserialize(&b).unwrap();
        }),
    );
    let b1 = big.clone();
    time(
        "postcard 1 MiB bytes",
        200,
        Box::new(move || {
            let b = postcard::to_stdvec(&b1).unwrap();
            let _: Vec<u8> = postcard::from_bytes(&b).unwrap();
        }),
    );
    let b2 = big;
    time(
        "bitcode  1 MiB bytes",
        200,
        Box::new(move || {
            let b = bitcode::serialize(&b2).unwrap();
            let _: Vec<u8> = bitcode::deserialize(&b).unwrap();
        }),
    );
}

/// `codec`: prints its comparison itself.
pub(crate) fn run(args: &[&str]) -> Option<String> {
    match args {
        ["codec"] => {
            codec();
            Some(String::new())
        }
        _ => None,
    }
}
