use super::*;

#[test]
fn a_second_writer_with_the_same_protocol_is_refused_and_told_who_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Lock::take_in(dir.path(), 126, "run").expect("first");
    let text = std::fs::read_to_string(first.path()).expect("holder");
    assert_eq!(text, format!("{} run\n", std::process::id()));
    let mode = std::fs::metadata(first.path()).expect("meta").mode() & 0o777;
    assert_eq!(mode, 0o644, "readable by a refused process of another user");

    match Lock::take_in(dir.path(), 126, "once") {
        Err(LockError::Held {
            protocol,
            holder,
            path,
        }) => {
            assert_eq!(protocol, 126);
            assert_eq!(path, first.path());
            assert_eq!(
                holder,
                Holder {
                    pid: Some(std::process::id()),
                    command: "run".into()
                }
            );
            let message = LockError::Held {
                protocol,
                holder,
                path,
            }
            .to_string();
            assert!(
                message.starts_with(&format!(
                    "protocol 126 is already routed6d's in this network namespace: routed6d run (pid {}) holds {}",
                    std::process::id(),
                    first.path().display()
                )),
                "{message}"
            );
        }
        other => panic!("not refused: {other:?}"),
    }
    // Another protocol is another owner.
    let other = Lock::take_in(dir.path(), 127, "run").expect("another protocol");
    assert_ne!(other.path(), first.path());

    // Released on drop, and the file goes with it.
    let path = first.path().to_path_buf();
    drop(first);
    assert!(!path.exists());
    let again = Lock::take_in(dir.path(), 126, "once").expect("free again");
    assert_eq!(
        std::fs::read_to_string(again.path()).expect("holder"),
        format!("{} once\n", std::process::id())
    );
}

#[test]
fn a_file_left_by_a_dead_holder_is_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Lock::take_in(dir.path(), 126, "run")
        .expect("probe")
        .path()
        .to_path_buf();
    // What a SIGKILLed `once` leaves: the file, and no flock (the kernel dropped it).
    std::fs::write(&path, "4194304 once\n").expect("leftover");
    let lock = Lock::take_in(dir.path(), 126, "run").expect("taken over");
    assert_eq!(
        std::fs::read_to_string(lock.path()).expect("holder"),
        format!("{} run\n", std::process::id())
    );
}

#[test]
fn a_symlink_at_the_lock_path_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Lock::take_in(dir.path(), 126, "run")
        .expect("probe")
        .path()
        .to_path_buf();
    let target = dir.path().join("target");
    std::fs::write(&target, "not yours").expect("target");
    std::os::unix::fs::symlink(&target, &path).expect("symlink");
    let refused = Lock::take_in(dir.path(), 126, "run").expect_err("through a link");
    assert!(matches!(refused, LockError::Io { .. }), "{refused:?}");
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "not yours"
    );
}

#[test]
fn the_holder_line_is_read_back_as_written_and_nothing_else() {
    assert_eq!(
        Holder::parse("4242 refresh-next-hop\n"),
        Holder {
            pid: Some(4242),
            command: "refresh-next-hop".into()
        }
    );
    assert!(Holder::parse("1 once").is_one_shot());
    assert!(Holder::parse("1 release").is_one_shot());
    assert!(!Holder::parse("1 run").is_one_shot());
    // Whatever else is in the file is not echoed into a message.
    let odd = Holder::parse("x \u{1b}[31mred\n");
    assert_eq!(
        odd,
        Holder {
            pid: None,
            command: String::new()
        }
    );
    assert_eq!(odd.to_string(), "another process");
    assert_eq!(Holder::parse("7").to_string(), "process 7");
}

#[test]
fn another_network_namespace_has_its_own_lock() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED (needs root for network namespaces): lock::another_network_namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let here = Lock::take_in(dir.path(), 126, "run").expect("here");
    let path = dir.path().to_path_buf();
    // unshare(CLONE_NEWNET) moves only the calling thread into a new namespace.
    let there = std::thread::spawn(move || {
        // SAFETY: unshare takes no pointers; it changes this thread's namespace only.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
        Lock::take_in(&path, 126, "run").map(|lock| lock.path().to_path_buf())
    })
    .join()
    .expect("thread");
    let there = there.expect("the other namespace's lock");
    assert_ne!(there, here.path());
}
