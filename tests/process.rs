//! The process conformance suite under the forkserver and spawn start methods.

mod common;

macro_rules! case {
    ($method:expr, $name:ident) => {
        #[test]
        fn $name() {
            let ctx = multiproc::Context::new($method);
            common::watchdog(stringify!($name), 60, || common::suite::$name(ctx));
        }
    };
}

mod forkserver {
    use super::common;
    macro_rules! fs_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::ForkServer, $name);
        };
    }
    crate::multiproc_suite!(fs_case);
}

mod spawn {
    use super::common;
    macro_rules! spawn_case {
        ($name:ident) => {
            case!(multiproc::StartMethod::Spawn, $name);
        };
    }
    crate::multiproc_suite!(spawn_case);
}
