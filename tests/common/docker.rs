//! A real Docker engine for the docker workload tests: Debian's `docker.io` (20.10) with
//! its `containerd`, `runc` and `tini`, taken from their packages without installing
//! them (`apt-get download`, `dpkg-deb -x` into /var/cache/routed6d-systest/docker), so
//! that no Docker service is set up or started on the test machine. One `dockerd` per
//! test, in the test's VPS namespace, with its own data, state and socket in a temporary
//! directory; no iptables (`--iptables=false --ip6tables=false`) and no default bridge.
//!
//! Images come from `docker import` of a root holding Debian's static busybox: there is
//! no registry here.
//!
//! The engine runs as PID 1 of a PID namespace of its own (`unshare --pid --kill-child`),
//! in a mount namespace of its own (its network namespaces' bind mounts and a tmpfs on
//! /etc/docker, where 20.10 writes its key, stay there): killing `unshare` on drop ends
//! dockerd, containerd, every shim and every container at once, also when a test fails
//! halfway.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use routed6d_sim::netns::{self, Namespace};

const CACHE: &str = "/var/cache/routed6d-systest/docker";
const PACKAGES: &str = "docker.io containerd runc tini busybox-static";
/// The image every test runs: busybox, with `sh`, `sleep`, `ip` and `ping`.
pub const IMAGE: &str = "r6d-busybox:1";

/// The unpacked packages, fetched once for every later run.
fn unpacked() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(CACHE);
    if root.join("usr/sbin/dockerd").exists() && root.join("bin/busybox").exists() {
        return root.to_path_buf();
    }
    let work = tempfile::tempdir().expect("tempdir");
    crate::debs::unpack(PACKAGES, &work.path().join("root"));
    std::fs::create_dir_all(root.parent().expect("parent")).expect("cache dir");
    // Another test binary may have won the race: its copy is as good.
    if std::fs::rename(work.path().join("root"), root).is_err()
        && !root.join("usr/sbin/dockerd").exists()
    {
        panic!("cannot put Docker in {CACHE}");
    }
    root.to_path_buf()
}

/// A running dockerd; ended with everything it started on drop.
pub struct Dockerd {
    engine: Child,
    pub socket: PathBuf,
    root: PathBuf,
    // Last: removed after the engine is gone.
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Start dockerd in `ns` and wait for its API; import the busybox image.
    pub fn start(ns: &Namespace) -> Dockerd {
        let root = unpacked();
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("docker.sock");
        let path = format!(
            "{0}/usr/bin:{0}/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            root.display()
        );
        // /etc/docker must exist to be mounted over; an empty directory is all that is
        // left of it on the host.
        std::fs::create_dir_all("/etc/docker").expect("/etc/docker");
        let script = format!(
            "mount -t tmpfs tmpfs /etc/docker && exec dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs --userland-proxy=false --data-root {d}/data --exec-root {d}/exec --pidfile {d}/docker.pid -H unix://{s}",
            d = dir.path().display(),
            s = socket.display()
        );
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log");
        // nsenter, not `ip netns exec`: that mounts a fresh /sys, without the cgroup
        // hierarchies runc needs.
        let engine = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name))
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "sh",
                "-c",
                &script,
            ])
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let dockerd = Dockerd {
            engine,
            socket,
            root,
            dir,
        };
        let up = netns::wait_until(Duration::from_secs(60), || {
            dockerd.try_docker(&["version"]).status.success()
        });
        assert!(up.is_some(), "dockerd did not answer:\n{}", dockerd.log());
        dockerd.import_busybox();
        dockerd
    }

    /// The engine's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The docker CLI of the same package, on this engine.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        Command::new(self.root.join("usr/bin/docker"))
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .output()
            .expect("docker")
    }

    /// `docker args…`, which must succeed; its output.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.try_docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker inspect --format`, or None when the object does not exist.
    pub fn format(&self, what: &str, name: &str, format: &str) -> Option<String> {
        let out = self.try_docker(&[what, "inspect", "--format", format, name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn import_busybox(&self) {
        let image = self.dir.path().join("image");
        std::fs::create_dir_all(image.join("bin")).expect("image dir");
        std::fs::copy(self.root.join("bin/busybox"), image.join("bin/busybox")).expect("busybox");
        for applet in ["sh", "sleep", "ip", "ping", "cat"] {
            std::os::unix::fs::symlink("busybox", image.join("bin").join(applet)).expect("link");
        }
        let tar = self.dir.path().join("image.tar");
        let packed = Command::new("tar")
            .arg("-C")
            .arg(&image)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(packed.success(), "tar of the busybox root");
        self.docker(&["import", &tar.display().to_string(), IMAGE]);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGKILL: unshare ignores SIGTERM while it waits, and its death takes the
        // whole PID namespace (--kill-child), containers included.
        let _ = self.engine.kill();
        let _ = self.engine.wait();
    }
}
