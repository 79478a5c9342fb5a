use super::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

const KEY: &str = "hup_secret_token_value_42";

/// A private key file in a fresh directory.
fn key_file(dir: &tempfile::TempDir, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn refused(path: &Path) -> String {
    match read(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_private_regular_file_gives_its_one_word() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_file(&dir, "token", &format!("{KEY}\n"), 0o600);
    assert_eq!(read(&path).expect("read").expose(), KEY);
}

#[test]
fn a_symlink_is_refused_even_to_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = key_file(&dir, "elsewhere", KEY, 0o600);
    let link = dir.path().join("token");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let e = refused(&link);
    assert!(e.starts_with("is a symbolic link"), "{e}");
}

#[test]
fn a_file_larger_than_4_kib_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_file(&dir, "token", &"k".repeat(MAX_TOKEN_BYTES + 1), 0o600);
    assert_eq!(
        refused(&path),
        "is larger than 4096 bytes: an API key is one short word"
    );
    let fits = key_file(&dir, "fits", &"k".repeat(MAX_TOKEN_BYTES), 0o600);
    assert_eq!(
        read(&fits).expect("4 KiB fits").expose().len(),
        MAX_TOKEN_BYTES
    );
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    let name = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    assert_eq!(refused(&path), "is not a regular file");
}

#[test]
fn group_or_other_bits_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    for mode in [0o640, 0o604, 0o620] {
        let path = key_file(&dir, "token", KEY, mode);
        assert_eq!(
            refused(&path),
            format!(
                "is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
                path.display()
            )
        );
    }
}

#[test]
fn the_owner_must_be_root_this_user_or_the_service_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_file(&dir, "token", KEY, 0o600);
    let meta = std::fs::metadata(&path).expect("stat");
    let owner = meta.uid();
    if owner == 0 {
        // Root's file is always accepted; the other owners are tried as root below.
        assert!(check(&meta, &path, 1000, || None).is_ok());
        return;
    }
    assert!(
        check(&meta, &path, owner, || None).is_ok(),
        "this user's own"
    );
    assert!(
        check(&meta, &path, owner + 1, || Some(owner)).is_ok(),
        "the service user's"
    );
    let e = check(&meta, &path, owner + 1, || None).expect_err("another user's");
    assert_eq!(
        e.to_string(),
        format!(
            "is owned by uid {owner}, not by root or routed6d: another user could change the key; run: chown root {}",
            path.display()
        )
    );
}

#[test]
fn another_users_file_is_refused_when_root_reads_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED (needs root to chown): token::tests::another_users_file_is_refused_when_root_reads_it"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_file(&dir, "token", KEY, 0o600);
    // 65534: nobody, never root nor the service user.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
    let e = refused(&path);
    assert!(
        e.starts_with("is owned by uid 65534, not by root or routed6d"),
        "{e}"
    );
    // A symlink another user owns, to root's private file: refused as a link.
    let link = dir.path().join("link");
    let private = key_file(&dir, "root-only", KEY, 0o600);
    std::os::unix::fs::symlink(&private, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).expect("lchown");
    assert!(refused(&link).starts_with("is a symbolic link"));
}

/// The path flips between the key file and a symlink to a file the key must never
/// come from, as fast as it can, while it is read: every read gives the key or
/// refuses the link, never the other file, because the checks are made on the file
/// that was opened.
#[test]
fn a_swap_between_check_and_read_never_reads_the_other_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    let good = key_file(&dir, "good", KEY, 0o600);
    let forbidden = key_file(&dir, "forbidden", "not-for-the-provider", 0o644);
    let good_link = dir.path().join("good-hard");
    std::fs::hard_link(&good, &good_link).expect("hard link");
    let bad_link = dir.path().join("bad-link");
    std::os::unix::fs::symlink(&forbidden, &bad_link).expect("symlink");
    std::fs::hard_link(&good, &path).expect("start with the key");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, path, dir) = (stop.clone(), path.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let (file_tmp, link_tmp) = (dir.join("file.tmp"), dir.join("link.tmp"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // rename(2) replaces the path atomically: it is always one or the other.
                let _ = std::fs::hard_link(dir.join("good-hard"), &file_tmp);
                let _ = std::fs::rename(&file_tmp, &path);
                let _ = std::os::unix::fs::symlink(dir.join("forbidden"), &link_tmp);
                let _ = std::fs::rename(&link_tmp, &path);
            }
        })
    };
    let (mut keys, mut links, mut others) = (0, 0, Vec::new());
    // Until both sides were read often enough; a loaded machine may starve the
    // swapper for a while, so the deadline is generous and rarely reached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline && (keys < 500 || links < 500) {
        match read(&path) {
            Ok(secret) => {
                if secret.expose() != KEY {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("read the swapped-in file after checking the key file");
                }
                keys += 1;
            }
            Err(TokenError::Symlink) => links += 1,
            Err(e) => others.push(e.to_string()),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().expect("swapper");
    assert!(
        keys > 0 && links > 0,
        "the swap was not exercised: {keys} keys, {links} links"
    );
    // Each read saw the key file or the link, never anything between.
    assert!(others.is_empty(), "other refusals: {others:?}");
}

#[test]
fn empty_and_several_words_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = key_file(&dir, "empty", " \n", 0o600);
    assert!(read(&empty).expect_err("empty").is_unwritten());
    let two = key_file(&dir, "two", "one two", 0o600);
    let e = read(&two).expect_err("two words");
    assert!(!e.is_unwritten());
    assert_eq!(
        e.to_string(),
        "holds more than one token (whitespace or control characters inside)"
    );
    let binary = key_file(&dir, "binary", "\u{0}\u{ff}", 0o600);
    assert!(read(&binary).is_err());
    assert!(
        read(&dir.path().join("absent"))
            .expect_err("missing")
            .is_unwritten()
    );
}

#[test]
fn reading_the_key_makes_the_process_non_dumpable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_file(&dir, "token", KEY, 0o600);
    // SAFETY: prctl with integer arguments only changes or reads this process's flag.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 1);
    read(&path).expect("read");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
}

#[test]
fn a_secret_is_zeroed_when_dropped_and_never_shown() {
    fn zeroed_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroed_on_drop::<Secret>();
    let secret = Secret::new(KEY.into());
    assert_eq!(
        format!("{secret} {secret:?}"),
        "<redacted> Secret(<redacted>)"
    );
}
