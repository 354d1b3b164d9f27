//! The process-pool scenarios of seeds 000, 001, 002 and 004, plus an executor and a pool that
//! survives a dying worker; shared by the standalone examples and the tour. Sleeps are a hundredth
//! of the seeds' so the tour stays quick.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc::pool::{Executor, Options, Pool, ThreadPool};
use multiproc::{Handle, Process};

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
}

/// Seed 000's `f`: a little arithmetic.
fn add_up(mut n: u64) -> u64 {
    for i in 0..5 {
        n += i;
    }
    n
}

fn add_up_in_process(n: u64) {
    add_up(n);
}

/// Seed 000: `Pool(4).map(f, range(100))` against 100 separate processes, timed.
pub fn pool_against_processes() -> multiproc::Result<()> {
    let t = Instant::now();
    let pool = Pool::new(4)?;
    let sums = pool.map(add_up, 0..100)?;
    let pool_time = t.elapsed();
    let t = Instant::now();
    let mut children: Vec<Process> = (0..100).map(|i| Process::new(add_up_in_process, (i,))).collect();
    for child in &mut children {
        child.start()?;
    }
    for child in &mut children {
        child.join()?;
    }
    let process_time = t.elapsed();
    println!("  pool of 4 (started inside the timing): {pool_time:.2?} for {} tasks", sums.len());
    println!("  100 processes: {process_time:.2?}");
    Ok(())
}

/// Seed 000's `f1`: sleeps (20 ms here, 2 s in the seed), returns `n * 2`.
fn double_slowly(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    n * 2
}

/// Seed 000: synchronous `apply` on `Pool(2)`: each call waits for its result.
pub fn apply_in_turn() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    for i in 0..5 {
        println!("  xxxxx");
        println!("  {}", pool.apply(double_slowly, (i,))?);
    }
    Ok(())
}

/// Seed 000: `apply_async` on `Pool(2)`: all are submitted at once, then collected in order.
pub fn apply_async_then_get() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let mut results = Vec::new();
    for i in 0..5 {
        println!("  xxxxx");
        results.push(pool.apply_async(double_slowly, (i,))?);
    }
    for result in results {
        println!("  {}", result.get()?);
    }
    Ok(())
}

fn hello_worker(message: String) {
    println!("  #######start {message}########");
    std::thread::sleep(Duration::from_millis(10));
    println!("  #######end   {message}########");
}

/// Seed 001: `hello1`..`hello9` on `Pool(3)`, first with `apply_async` (three at a time,
/// interleaved), then with `apply` (one after the other).
pub fn hello_async_and_sync() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    println!("  apply_async:");
    let results: Vec<_> = (1..10).map(|i| pool.apply_async(hello_worker, (format!("hello{i}"),))).collect();
    pool.close();
    pool.join()?;
    for result in results {
        result?.get()?;
    }
    println!("  main end");
    let pool = Pool::new(3)?;
    println!("  apply:");
    for i in 1..10 {
        pool.apply(hello_worker, (format!("hello{i}"),))?;
    }
    pool.close();
    pool.join()?;
    println!("  main end");
    Ok(())
}

fn square_reporting(n: u64) -> u64 {
    println!("  func1 in worker pid {}", std::process::id());
    n * n
}

/// Seed 002: `apply_async` on `Pool(3)`, `close`, `join`, then `get` each result (all ready).
pub fn close_join_then_get() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    let results: Vec<_> = (0..5).map(|i| pool.apply_async(square_reporting, (i,))).collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    let ready = results.iter().filter(|r| r.ready()).count();
    let values: Vec<u64> = results.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    println!("  after join: {ready} of 5 ready: {values:?}");
    Ok(())
}

/// Seeds 000 and 002: the callback runs in the parent (its pid is the main process's).
pub fn callback_runs_in_the_parent() -> multiproc::Result<()> {
    println!("  main process pid {}", std::process::id());
    let pool = Pool::new(4)?;
    let options = Options::new().callback(|value: &u64| {
        println!("  callback in pid {}: {value}", std::process::id());
    });
    let result = pool.apply_async_with(square_reporting, (10,), options)?;
    pool.close();
    pool.join()?;
    assert!(result.ready());
    Ok(())
}

/// A tiny HTTP server on loopback serving `pages` pages, one request per connection.
fn serve_pages(listener: TcpListener, pages: usize) {
    for _ in 0..pages {
        let Ok((mut conn, _)) = listener.accept() else { return };
        // Read the whole request head: closing a socket with unread data resets the connection.
        let mut reader = BufReader::new(&conn);
        let mut request = String::new();
        let _ = reader.read_line(&mut request);
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body = format!("<html><title>page {path}</title><body>{}</body></html>", "text ".repeat(path.len() * 10));
        let _ = write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    }
}

/// The crawler's task: fetches `url` (`http://host:port/path`) and returns the page.
fn fetch(url: String) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = TcpStream::connect(host).map_err(|e| format!("connect to {host}: {e}"))?;
    write!(conn, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    conn.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (_, body) = response.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    Ok(body.to_string())
}

/// Seed 002: a crawler: pages fetched by pool workers (the network wait), parsed by callbacks in
/// the parent. The pages come from a small HTTP server this example starts on loopback.
pub fn crawler() -> multiproc::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let address = listener.local_addr().map_err(io)?;
    let paths = ["index", "news", "about", "contact-us"];
    let server = std::thread::spawn(move || serve_pages(listener, paths.len()));
    let pool = Pool::new(3)?;
    let titles = Arc::new(Mutex::new(Vec::new()));
    let mut fetches = Vec::new();
    for path in paths {
        let titles = Arc::clone(&titles);
        let parse = move |page: &String| {
            let title = page.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or("?");
            titles.lock().unwrap().push(format!("{title} ({} bytes)", page.len()));
        };
        let options = Options::new().callback(parse).error_callback(|e| println!("  fetch failed: {e}"));
        fetches.push(pool.apply_async_with(fetch, (format!("http://{address}/{path}"),), options)?);
    }
    pool.close();
    pool.join()?;
    let _ = server.join();
    let fetched = fetches.iter().filter(|f| f.successful().unwrap_or(false)).count();
    println!("  {fetched} of {} pages fetched", paths.len());
    let mut titles = titles.lock().unwrap().clone();
    titles.sort();
    for title in titles {
        println!("  parsed in the parent: {title}");
    }
    Ok(())
}

/// The echo server's task: talks to one client until it hangs up; returns the worker's pid.
fn talk(conn: Handle<TcpStream>) -> std::io::Result<u32> {
    let mut conn = conn.into_inner();
    let mut buf = [0u8; 1024];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(std::process::id());
        }
        conn.write_all(&buf[..n].to_ascii_uppercase())?;
    }
}

fn echo_client(port: u16, name: String) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.write_all(name.as_bytes())?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Seed 002: a TCP echo server handing each accepted connection to a `Pool(4)` worker with
/// `apply_async` (the socket travels to the worker as a `Handle`).
pub fn echo_server_with_a_pool() -> multiproc::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let clients: Vec<_> =
        (0..6).map(|i| std::thread::spawn(move || echo_client(port, format!("client-{i}")))).collect();
    let pool = Pool::new(4)?;
    let mut served = Vec::new();
    for _ in 0..clients.len() {
        let (conn, _) = listener.accept().map_err(io)?;
        served.push(pool.apply_async(talk, (Handle::new(conn),))?);
    }
    for client in clients {
        let answer = client.join().expect("client thread").map_err(io)?;
        println!("  client got {answer}");
    }
    let mut pids: Vec<u32> = served.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    pids.sort();
    pids.dedup();
    println!("  6 clients served by {} worker processes", pids.len());
    Ok(())
}

/// Seed 004 (threads): a `ThreadPool` runs closures that capture, on named threads.
pub fn thread_pool() -> multiproc::Result<()> {
    let pool = ThreadPool::new(3)?;
    let greeting = String::from("hello from");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let lines = pool.map(
        move |task: u32| {
            std::thread::sleep(Duration::from_millis(5));
            let thread = std::thread::current().name().unwrap_or("?").to_string();
            record.lock().unwrap().push(thread.clone());
            format!("{greeting} {thread}: task {task}")
        },
        1..=6,
    )?;
    for line in lines {
        println!("  {line}");
    }
    println!("  {} tasks ran on threads of this process {}", seen.lock().unwrap().len(), std::process::id());
    Ok(())
}

fn cube(x: i64) -> i64 {
    x * x * x
}

/// `concurrent.futures` style: submit returns a future, map yields in order, shutdown.
pub fn executor() -> multiproc::Result<()> {
    let mut executor = Executor::new(2)?;
    let future = executor.submit(cube, (3,))?;
    println!("  submit(cube, 3) -> {}", future.get()?);
    let cubes: Vec<i64> = executor.map(cube, 0..6)?.collect::<Result<_, _>>()?;
    println!("  map(cube, 0..6) -> {cubes:?}");
    executor.shutdown(true, false)?;
    Ok(())
}

fn crash_on(n: u64) -> u64 {
    if n == 3 {
        std::process::abort();
    }
    n * 10
}

/// CPython's pool hangs forever when a worker dies (gh-66587); here the task fails with how its
/// worker ended, the worker is replaced, and every other task completes.
pub fn a_worker_dies() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let results: Vec<_> = (0..6).map(|n| pool.apply_async(crash_on, (n,))).collect::<Result<_, _>>()?;
    for (n, result) in results.into_iter().enumerate() {
        match result.get() {
            Ok(value) => println!("  task {n}: {value}"),
            Err(e) => println!("  task {n}: {e}"),
        }
    }
    println!("  {:?}", pool.stats());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seed 002: the pool's own section

fn print_item(n: multiproc::manager::Value) {
    println!("  worker {}: {n}", std::process::id());
}

/// Seed 002: `Pool(5).map(func, [(1, 2), 'alex'])`: `map` takes one iterable, each item one
/// task. Python's list mixes a tuple and a string; in Rust the items share one type, here the
/// dynamically typed `manager::Value` (an enum would do as well).
pub fn map_over_mixed_items() -> multiproc::Result<()> {
    use multiproc::manager::Value;
    let pool = Pool::new(5)?;
    let items = vec![Value::Tuple(vec![1.into(), 2.into()]), Value::from("alex")];
    pool.map(print_item, items)?;
    Ok(())
}

fn greet_worker(pool_name: String) {
    println!("  initializer: worker {} joins {pool_name}", std::process::id());
}

/// Seed 002's `work`: prints the worker's pid, sleeps (10 ms here, 1 s in the seed), returns `n**2`.
fn square_slowly(n: u64) -> (u32, u64) {
    println!("  {} run", std::process::id());
    std::thread::sleep(Duration::from_millis(10));
    (std::process::id(), n * n)
}

/// Seed 002: `Pool(3)` created from nothing (here with an `initializer`, the `Pool(numprocess,
/// initializer, initargs)` of its parameter list), then ten synchronous `apply` calls: the pool's
/// processes (no new ones) run every task, and `res_l` holds the results in order.
pub fn apply_on_three_workers() -> multiproc::Result<()> {
    let pool = Pool::builder().processes(3).initializer(greet_worker, ("Pool(3)".to_string(),)).build()?;
    let mut res_l = Vec::new();
    let mut pids = Vec::new();
    for i in 0..10 {
        let (pid, square) = pool.apply(square_slowly, (i,))?; // waits here until the task is done
        pids.push(pid);
        res_l.push(square);
    }
    println!("  {res_l:?}");
    pids.sort_unstable();
    pids.dedup();
    // apply waits for each task, so one idle worker is enough: often the same one runs them all.
    println!("  ten tasks ran on {} of the 3 worker processes, none on a new one", pids.len());
    assert!(pids.len() <= 3);
    Ok(())
}

fn func(msg: String) -> String {
    println!("  msg: {msg}");
    std::thread::sleep(Duration::from_millis(10)); // 1 s (async) and 0.1 s (sync) in the seed
    msg
}

/// Seed 002, "apply_async and apply in detail": ten `apply_async("hello i")` on `Pool(3)`, the
/// `=====>` line printed before any result, `close`, `join`, the list of result objects (all
/// ready), then `get` on each; then the same with `apply`, whose list holds the values themselves.
pub fn msg_hello_async_then_sync() -> multiproc::Result<()> {
    let pool = Pool::new(3)?;
    let res_l: Vec<_> = (0..10).map(|i| pool.apply_async(func, (format!("hello {i}"),))).collect::<Result<_, _>>()?;
    println!("  ==============================>");
    pool.close();
    pool.join()?;
    println!("  {res_l:?}");
    for res in res_l {
        println!("  {}", res.get()?);
    }

    let pool = Pool::new(3)?;
    let res_l: Vec<String> = (0..10).map(|i| pool.apply(func, (format!("hello {i}"),))).collect::<Result<_, _>>()?;
    println!("  ==============================>");
    pool.close();
    pool.join()?;
    println!("  {res_l:?}");
    Ok(())
}

/// Seed 002, "no callback needed": `Pool()` (one worker per CPU), ten `apply_async(work, i)`,
/// `close`, `join`, then the parent collects every result and handles them together.
pub fn collect_without_callback() -> multiproc::Result<()> {
    let pool = Pool::builder().build()?;
    println!("  Pool() has {} workers (cpu_count)", pool.processes());
    let res_l: Vec<_> = (0..10).map(|i| pool.apply_async(square_reporting_quietly, (i,))).collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    let nums: Vec<u64> = res_l.into_iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    println!("  {nums:?}");
    Ok(())
}

fn square_reporting_quietly(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(10)); // 1 s in the seed
    n * n
}
