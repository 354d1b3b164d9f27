//! A walk through every example, scenario by scenario, printing what happens: `cargo run --release
//! --example tour`.
//!
//! Each scenario lives in its own example file (`examples/NAME.rs`, runnable alone with `cargo run
//! --example NAME`); the tour includes those files as modules and calls their scenarios, so each
//! scenario is written once. `examples/README.md` says which Python program each one ports.
//!
//! Words after `--` pick the scenarios whose title contains one of them (`cargo run --release
//! --example tour -- Queue Pool`), `--skip WORD` leaves out those that contain it; other flags are
//! ignored. `cargo test` runs the tour too (`test = true`, `harness = false` in `Cargo.toml`), so a
//! scenario that fails or hangs fails the test suite.

// Each example's own `main` is not called here (the tour calls its scenarios one by one).
#![allow(dead_code)]

#[path = "append_file.rs"]
mod append_file;
#[path = "barrier_phases.rs"]
mod barrier_phases;
#[path = "condition_stock.rs"]
mod condition_stock;
#[path = "daemon.rs"]
mod daemon;
#[path = "endless_consumer.rs"]
mod endless_consumer;
#[path = "event_result.rs"]
mod event_result;
#[path = "executor.rs"]
mod executor;
#[path = "grab_ticket.rs"]
mod grab_ticket;
#[path = "joinable_queue.rs"]
mod joinable_queue;
#[path = "joo_event.rs"]
mod joo_event;
#[path = "listener_client.rs"]
mod listener_client;
#[path = "lock_print.rs"]
mod lock_print;
#[path = "lock_threads.rs"]
mod lock_threads;
#[path = "manager_dict_list.rs"]
mod manager_dict_list;
#[path = "manager_maths.rs"]
mod manager_maths;
#[path = "manager_mixed.rs"]
mod manager_mixed;
#[path = "manager_steps.rs"]
mod manager_steps;
#[path = "mp_workers.rs"]
mod mp_workers;
#[path = "my_process.rs"]
mod my_process;
#[path = "parent_child_pids.rs"]
mod parent_child_pids;
#[path = "pipe_hello.rs"]
mod pipe_hello;
#[path = "pool_apply.rs"]
mod pool_apply;
#[path = "pool_apply_results.rs"]
mod pool_apply_results;
#[path = "pool_callback.rs"]
mod pool_callback;
#[path = "pool_crawler.rs"]
mod pool_crawler;
#[path = "pool_echo_server.rs"]
mod pool_echo_server;
#[path = "pool_hello.rs"]
mod pool_hello;
#[path = "pool_map.rs"]
mod pool_map;
#[path = "pool_map_mixed.rs"]
mod pool_map_mixed;
#[path = "pool_worker_dies.rs"]
mod pool_worker_dies;
#[path = "process_attributes.rs"]
mod process_attributes;
#[path = "producer_consumer.rs"]
mod producer_consumer;
#[path = "python_listener.rs"]
mod python_listener;
#[path = "queue_kinds.rs"]
mod queue_kinds;
#[path = "queue_of_five.rs"]
mod queue_of_five;
#[path = "queue_walkthrough.rs"]
mod queue_walkthrough;
#[path = "remote_manager.rs"]
mod remote_manager;
#[path = "semaphore_rooms.rs"]
mod semaphore_rooms;
#[path = "shareable_list.rs"]
mod shareable_list;
#[path = "shared_memory_blocks.rs"]
mod shared_memory_blocks;
#[path = "shared_memory_manager.rs"]
mod shared_memory_manager;
#[path = "shared_values.rs"]
mod shared_values;
#[path = "simplex_pipe.rs"]
mod simplex_pipe;
#[path = "start_ten.rs"]
mod start_ten;
#[path = "tcp_echo.rs"]
mod tcp_echo;
#[path = "thread_pool.rs"]
mod thread_pool;
#[path = "threads.rs"]
mod threads;
#[path = "traffic_lights.rs"]
mod traffic_lights;
#[path = "upper_server.rs"]
mod upper_server;

use std::time::Instant;

type Scenario = (&'static str, fn() -> multiproc::Result<()>);

const SCENARIOS: &[Scenario] = &[
    ("Ten processes started, then all joined", start_ten::ten_processes),
    ("A Process subclass: MyProcess with run()", my_process::my_process),
    ("Ten processes append to one file, then count the lines", append_file::append_to_one_file),
    ("A daemon process dies with its parent", daemon::daemon_dies_with_parent),
    ("A process-per-connection TCP echo server", tcp_echo::tcp_echo_server),
    ("Pipe: the main process sends, the child prints", pipe_hello::pipe_to_child),
    ("Pipe: the child sends ['hi!! I am Python']", pipe_hello::pipe_from_child),
    ("A one-way pipe, Pipe(duplex=False)", simplex_pipe::simplex_pipe),
    ("A Process subclass serving requests over a duplex pipe", upper_server::upper_case_server),
    ("Listener and Client with an authkey, in two processes", listener_client::listener_and_client),
    ("A Rust client and a CPython Listener, pickled values", python_listener::rust_client_python_listener),
    ("Five processes work one at a time under a Lock", lock_print::five_workers_under_lock),
    ("Ten buyers, one ticket in a JSON file, a Lock", grab_ticket::grab_ticket),
    ("'hello world' printed under a Lock by ten processes", lock_print::hello_world_under_lock),
    ("Guests with Semaphore(2), KTV rooms with Semaphore(4)", semaphore_rooms::semaphore_rooms),
    ("Event: the parent waits for a child's result", event_result::event_result),
    ("Event: a traffic light and ten cars", traffic_lights::traffic_lights),
    ("Event: joo_a waits for joo_b", joo_event::joo_a_and_joo_b),
    ("A hundred threads decrement a counter under one Lock", lock_threads::hundred_threads),
    ("Barrier: four worker processes in three phases", barrier_phases::barrier_phases),
    ("Condition: a producer process and three consumer processes", condition_stock::condition_stock),
    ("Value('d', 10.0) set to 10.78 by a child", shared_values::value_set_by_child),
    ("Array('i', [1, 2, 3, 4, 5]) with num[2] = 9999 set by a child", shared_values::array_set_by_child),
    ("SharedMemory: shm_a and shm_b, ending in b'howdy'", shared_memory_blocks::shm_a_and_shm_b),
    ("ShareableList of mixed items, and a str too long for its slot", shareable_list::shareable_list_walkthrough),
    ("ShareableList(range(5)) attached by name in a second process", shareable_list::shareable_list_by_name),
    ("ShareableList(range(2000)) worked on by two processes, then summed", shareable_list::shareable_list_two_halves),
    (
        "Queue(3): put, put_nowait when full, full, get, get_nowait when empty, empty",
        queue_walkthrough::queue_walkthrough,
    ),
    ("Queue: a child puts, another child and the parent get", queue_walkthrough::child_puts_parent_gets),
    ("Queue(3): ten producer and ten consumer processes", producer_consumer::ten_producers_ten_consumers),
    ("Queue: three producers, two consumers, None sentinels", producer_consumer::sentinels_end_the_consumers),
    (
        "JoinableQueue: daemon consumers, producers waiting on join",
        joinable_queue::joinable_queue_with_daemon_consumers,
    ),
    ("Queue(maxsize=5): a producer fills it, a consumer drains it", producer_consumer::producer_fills_consumer_drains),
    ("Manager: a worker fills a dict and a list", manager_dict_list::worker_fills_dict_and_list),
    ("Manager: d[1] = '1', d['2'] = 2, d[0.25] = None, l.reverse()", manager_mixed::mixed_dict_and_list),
    ("A custom manager serving MathsClass: add and mul", manager_maths::maths_class),
    ("A remote manager on TCP with an authkey: job and result queues", remote_manager::remote_job_queue),
    (
        "SharedMemoryManager: ShareableList(range(2000)) summed by two workers, one half each",
        shared_memory_manager::shared_memory_manager_two_halves,
    ),
    ("Pool(4).map over range(100) against 100 processes, timed", pool_map::pool_against_processes),
    ("Pool(2).apply: one call at a time", pool_apply::apply_in_turn),
    ("Pool(2).apply_async, then get each", pool_apply::apply_async_then_get),
    ("hello1..hello9 on Pool(3) with apply_async, then with apply", pool_hello::hello_async_and_sync),
    ("apply_async, close, join, then get", pool_apply::close_join_then_get),
    ("A callback runs in the parent", pool_callback::callback_runs_in_the_parent),
    ("A crawler: pages fetched by workers, parsed in callbacks", pool_crawler::crawler),
    ("A TCP echo server handing connections to Pool(4) workers", pool_echo_server::echo_server_with_a_pool),
    ("ThreadPool: capturing closures on threads", thread_pool::thread_pool),
    ("An executor: submit, map, shutdown (concurrent.futures)", executor::executor),
    ("A worker dies in a task: that task fails, the others complete", pool_worker_dies::a_worker_dies),
    ("Parent process and child process pids; two targets; three children", parent_child_pids::parent_and_child_pids),
    ("Process name, pid, is_alive, join(timeout), terminate, exitcode", process_attributes::process_attributes),
    ("A daemon may not have children", process_attributes::daemon_cannot_have_children),
    ("Pool(5).map(func, [(1, 2), 'alex'])", pool_map_mixed::map_over_mixed_items),
    ("Pool(3) with an initializer: ten apply calls on its workers", pool_apply_results::apply_on_three_workers),
    (
        "'msg: hello i' with apply_async, close, join, get; then with apply",
        pool_apply_results::msg_hello_async_then_sync,
    ),
    (
        "Pool(): apply_async, close, join, then the results together, no callback",
        pool_apply_results::collect_without_callback,
    ),
    ("Queue(5): full, put when full, get, empty, get when empty", queue_of_five::queue_of_five_walkthrough),
    ("Queue: a producer child puts 'hello baby', a consumer child gets it", queue_of_five::child_to_child),
    ("Queue: a consumer with `while True: q.get()` never ends", endless_consumer::consumer_never_ends),
    ("Queue, SimpleQueue, LifoQueue, PriorityQueue: put 3, 1, 2", queue_kinds::queue_kinds),
    ("JoinableQueue: the main process waits in q.join()", joinable_queue::joinable_queue_main_joins),
    ("CPython's mp_workers.py: functions as values on a task queue, four workers", mp_workers::feed_workers),
    ("Manager list, dict, Queue, Lock, Event, Value, Array; SharedMemoryManager blocks", manager_steps::manager_steps),
    ("Threads: Thread(target=task) and a Thread subclass", threads::two_ways_to_start_a_thread),
    ("Threads share the process's memory, processes do not", threads::threads_share_memory),
    ("Daemon threads end with their process", threads::daemon_threads),
    ("current_thread, the pid of threads, active_count", threads::current_thread_and_active_count),
];

fn main() -> multiproc::Result<()> {
    println!("multiproc tour: start method {}, {} CPUs\n", multiproc::get_start_method(), multiproc::cpu_count());
    let (words, skipped) = picks(std::env::args().skip(1));
    let picked = |title: &&str| {
        (words.is_empty() || words.iter().any(|word| title.contains(word.as_str())))
            && !skipped.iter().any(|word| title.contains(word.as_str()))
    };
    let watchdog = watchdog();
    let all = Instant::now();
    for (title, scenario) in SCENARIOS.iter().filter(|(title, _)| picked(title)) {
        let _ = watchdog.send(title);
        println!("== {title}");
        let t = Instant::now();
        scenario()?;
        println!("   ({:.1} ms)\n", t.elapsed().as_secs_f64() * 1e3);
    }
    println!("tour done in {:.0} ms", all.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// The words that pick scenarios, and those that skip them, from arguments as `cargo test` passes
/// them on: `--skip WORD` skips; other flags, and the values of those that take one, are ignored.
fn picks(mut args: impl Iterator<Item = String>) -> (Vec<String>, Vec<String>) {
    let (mut words, mut skipped) = (Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--skip" => skipped.extend(args.next()),
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            _ => words.push(arg),
        }
    }
    (words, skipped)
}

/// The longest a scenario may take before the tour gives up on it (each takes well under a second).
const SCENARIO_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A thread that aborts the tour if a scenario (or the end of the tour) runs past
/// [`SCENARIO_LIMIT`], so that a scenario that hangs fails `cargo test` instead of hanging it.
/// Send each scenario's title as it starts.
fn watchdog() -> std::sync::mpsc::Sender<&'static str> {
    let (started, scenarios) = std::sync::mpsc::channel::<&'static str>();
    std::thread::spawn(move || {
        let mut current = None;
        loop {
            match scenarios.recv_timeout(SCENARIO_LIMIT) {
                Ok(title) => current = Some(title),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(title) = current {
                        eprintln!(
                            "tour: {title:?} (or the end of the tour after it) still runs after {SCENARIO_LIMIT:?}: aborting"
                        );
                        std::process::abort();
                    }
                }
            }
        }
    });
    // Never dropped, so that the watchdog also covers the end of the process (which joins the
    // children still running) and a panic that unwinds out of `main`.
    std::mem::forget(started.clone());
    started
}
