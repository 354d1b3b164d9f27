//! A walk through every scenario of the seed tutorials that `multiproc` implements so far, printing
//! what happens. `cargo run --release --example tour`.
//!
//! Words after `--` pick the scenarios whose title contains one of them (`cargo run --release
//! --example tour -- Queue Pool`), `--skip WORD` leaves out those that contain it; other flags are
//! ignored. `cargo test` runs the
//! tour too (`test = true`, `harness = false` in `Cargo.toml`), so a scenario that fails or hangs
//! fails the test suite. `examples/SEEDS.md` maps each seed scenario to its row.

#[path = "seeds/connections.rs"]
mod connections;
#[path = "seeds/managers.rs"]
mod managers;
#[path = "seeds/pools.rs"]
mod pools;
#[path = "seeds/processes.rs"]
mod processes;
#[path = "seeds/queues.rs"]
mod queues;
#[path = "seeds/shared_memory.rs"]
mod shared_memory;
#[path = "seeds/sync.rs"]
mod sync;
#[path = "seeds/threads.rs"]
mod threads;

use std::time::Instant;

type Scenario = (&'static str, fn() -> multiproc::Result<()>);

const SCENARIOS: &[Scenario] = &[
    ("Ten processes started, then all joined (seed 002)", processes::ten_processes),
    ("A Process subclass: MyProcess with run() (seed 002)", processes::my_process),
    ("Ten processes append to one file, then count the lines (seed 002)", processes::append_to_one_file),
    ("A daemon process dies with its parent (seed 002)", processes::daemon_dies_with_parent),
    ("A process-per-connection TCP echo server (seed 002)", processes::tcp_echo_server),
    ("Pipe: the main process sends, the child prints (seed 000)", connections::pipe_to_child),
    ("Pipe: the child sends ['hi!! I am Python'] (seed 003)", connections::pipe_from_child),
    ("A one-way pipe, Pipe(duplex=False) (seed 003)", connections::simplex_pipe),
    ("A Process subclass serving requests over a duplex pipe", connections::upper_case_server),
    ("Listener and Client with an authkey, in two processes", connections::listener_and_client),
    ("A Rust client and a CPython Listener, pickled values", connections::rust_client_python_listener),
    ("Five processes work one at a time under a Lock (seed 002)", sync::five_workers_under_lock),
    ("Ten buyers, one ticket in a JSON file, a Lock (seed 002)", sync::grab_ticket),
    ("'hello world' printed under a Lock by ten processes (seed 003)", sync::hello_world_under_lock),
    ("Guests with Semaphore(2) (seed 000), KTV rooms with Semaphore(4) (seed 002)", sync::semaphore_rooms),
    ("Event: the parent waits for a child's result (seed 000)", sync::event_result),
    ("Event: a traffic light and ten cars (seed 002)", sync::traffic_lights),
    ("Event: joo_a waits for joo_b (seed 003)", sync::joo_a_and_joo_b),
    ("A hundred threads decrement a counter under one Lock (seed 004)", sync::hundred_threads),
    ("Barrier: four worker processes in three phases", sync::barrier_phases),
    ("Condition: a producer process and three consumer processes", sync::condition_stock),
    ("Value('d', 10.0) set to 10.78 by a child (seed 003)", shared_memory::value_set_by_child),
    ("Array('i', [1, 2, 3, 4, 5]) with num[2] = 9999 set by a child (seed 003)", shared_memory::array_set_by_child),
    ("SharedMemory: shm_a and shm_b, ending in b'howdy' (seed 003)", shared_memory::shm_a_and_shm_b),
    (
        "ShareableList of mixed items, and a str too long for its slot (seed 003)",
        shared_memory::shareable_list_walkthrough,
    ),
    ("ShareableList(range(5)) attached by name in a second process (seed 003)", shared_memory::shareable_list_by_name),
    (
        "ShareableList(range(2000)) worked on by two processes, then summed (seed 003)",
        shared_memory::shareable_list_two_halves,
    ),
    (
        "Queue(3): put, put_nowait when full, full, get, get_nowait when empty, empty (seeds 002, 004)",
        queues::queue_walkthrough,
    ),
    ("Queue: a child puts, another child and the parent get (seed 002)", queues::child_puts_parent_gets),
    ("Queue(3): ten producer and ten consumer processes (seed 002)", queues::ten_producers_ten_consumers),
    ("Queue: three producers, two consumers, None sentinels (seed 002)", queues::sentinels_end_the_consumers),
    (
        "JoinableQueue: daemon consumers, producers waiting on join (seeds 002, 004)",
        queues::joinable_queue_with_daemon_consumers,
    ),
    ("Queue(maxsize=5): a producer fills it, a consumer drains it (seed 003)", queues::producer_fills_consumer_drains),
    ("Manager: a worker fills a dict and a list (seed 001)", managers::worker_fills_dict_and_list),
    ("Manager: d[1] = '1', d['2'] = 2, d[0.25] = None, l.reverse() (seed 003)", managers::mixed_dict_and_list),
    ("A custom manager serving MathsClass: add and mul (seed 003)", managers::maths_class),
    ("A remote manager on TCP with an authkey: job and result queues", managers::remote_job_queue),
    (
        "SharedMemoryManager: ShareableList(range(2000)) summed by two workers, one half each (seed 003)",
        managers::shared_memory_manager_two_halves,
    ),
    ("Pool(4).map over range(100) against 100 processes, timed (seed 000)", pools::pool_against_processes),
    ("Pool(2).apply: one call at a time (seed 000)", pools::apply_in_turn),
    ("Pool(2).apply_async, then get each (seed 000)", pools::apply_async_then_get),
    ("hello1..hello9 on Pool(3) with apply_async, then with apply (seed 001)", pools::hello_async_and_sync),
    ("apply_async, close, join, then get (seed 002)", pools::close_join_then_get),
    ("A callback runs in the parent (seeds 000, 002)", pools::callback_runs_in_the_parent),
    ("A crawler: pages fetched by workers, parsed in callbacks (seed 002)", pools::crawler),
    ("A TCP echo server handing connections to Pool(4) workers (seed 002)", pools::echo_server_with_a_pool),
    ("ThreadPool: capturing closures on threads (seed 004)", pools::thread_pool),
    ("An executor: submit, map, shutdown (concurrent.futures)", pools::executor),
    ("A worker dies in a task: that task fails, the others complete", pools::a_worker_dies),
    ("Parent process and child process pids; two targets; three children (seed 001)", processes::parent_and_child_pids),
    ("Process name, pid, is_alive, join(timeout), terminate, exitcode (seed 002)", processes::process_attributes),
    ("A daemon may not have children (seed 002)", processes::daemon_cannot_have_children),
    ("Pool(5).map(func, [(1, 2), 'alex']) (seed 002)", pools::map_over_mixed_items),
    ("Pool(3) with an initializer: ten apply calls on its workers (seed 002)", pools::apply_on_three_workers),
    ("'msg: hello i' with apply_async, close, join, get; then with apply (seed 002)", pools::msg_hello_async_then_sync),
    (
        "Pool(): apply_async, close, join, then the results together, no callback (seed 002)",
        pools::collect_without_callback,
    ),
    ("Queue(5): full, put when full, get, empty, get when empty (seed 004)", queues::queue_of_five_walkthrough),
    ("Queue: a producer child puts 'hello baby', a consumer child gets it (seed 004)", queues::child_to_child),
    ("Queue: a consumer with `while True: q.get()` never ends (seed 002)", queues::consumer_never_ends),
    ("Queue, SimpleQueue, LifoQueue, PriorityQueue: put 3, 1, 2 (seed 003)", queues::queue_kinds),
    ("JoinableQueue: the main process waits in q.join() (seed 004)", queues::joinable_queue_main_joins),
    (
        "Manager list, dict, Queue, Lock, Event, Value, Array; SharedMemoryManager blocks (seed 003)",
        managers::manager_steps,
    ),
    ("Threads: Thread(target=task) and a Thread subclass (seed 004)", threads::two_ways_to_start_a_thread),
    ("Threads share the process's memory, processes do not (seed 004)", threads::threads_share_memory),
    ("Daemon threads end with their process (seed 004)", threads::daemon_threads),
    ("current_thread, the pid of threads, active_count (seed 004)", threads::current_thread_and_active_count),
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
