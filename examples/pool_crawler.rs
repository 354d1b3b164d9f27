//! A crawler: pages fetched by workers, parsed in callbacks.
//!
//! Ported from Python:
//!
//! - `Pool([numprocess [,initializer [, initargs]]])`, `apply`, `apply_async`, `close`, `join`,
//!   `get`, `ready`, `successful`, `wait`. A list of parameters and methods, not a program; each is
//!   used by a scenario.
//! - `get_page` in workers, `pasrse_page` callback appends to `db.txt`. Fetches from a small HTTP
//!   server the example starts on loopback (CI has no internet, and no `requests`); the callback
//!   collects titles and sizes instead of appending to `db.txt`.
//! - `get_page(url, pattern)`, `parse_page` with a regular expression (maoyan board). Same shape
//!   (fetch in the pool, parse in the callback); the parse is a string split, not a regex (no regex
//!   dependency).
//!
//! Run it with `cargo run --example pool_crawler`; the `tour` example runs it too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use multiproc::pool::{Options, Pool};

fn io(e: std::io::Error) -> multiproc::Error {
    multiproc::Error::Io { context: "run the example", source: e }
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

/// A crawler: pages fetched by pool workers (the network wait), parsed by callbacks in
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

fn main() -> multiproc::Result<()> {
    crawler()
}
