//! An interactive terminal driven through tmux, for `docker run -it`, `exec -it` and `attach`.

use std::process::Command;
use std::time::Duration;

use super::{require, run, stdout, wait_until, DOCKER_CLI};

/// A tmux session running a shell whose `DOCKER_HOST` is the given manager; killed on drop.
pub struct Tty {
    session: String,
}

impl Tty {
    /// A 100x25 terminal with a bare bash prompt.
    pub fn open(docker_host: &str, tag: &str) -> Tty {
        require("tmux", "tmux");
        let session = format!("swarm-{tag}-{}", std::process::id());
        let config = std::env::temp_dir().join(format!("swarm-test-docker-config-{}", std::process::id()));
        let shell = format!("env DOCKER_HOST={docker_host} DOCKER_CONFIG={} bash --norc --noprofile", config.display());
        let o = run(Command::new("tmux").args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "25", &shell]));
        assert!(o.status.success(), "tmux new-session failed");
        Tty { session }
    }

    /// Types a line and presses Enter.
    pub fn send(&self, keys: &str) {
        run(Command::new("tmux").args(["send-keys", "-t", &self.session, keys, "Enter"]));
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        stdout(&run(Command::new("tmux").args(["capture-pane", "-p", "-t", &self.session])))
    }

    /// Clears the screen at the host prompt and waits until it is empty of old output.
    pub fn clear(&self) {
        self.send("clear");
        self.wait_for("the screen clears", |s| !s.contains("/ #") && !s.contains("rc="));
    }

    /// Waits until the screen satisfies `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        wait_until(Duration::from_secs(20), what, || pred(&self.screen()));
    }

    /// Keys typed before the CLI exits would go to the container: wait for the host prompt.
    pub fn wait_host_prompt(&self, what: &str) {
        self.wait_for(what, |s| s.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("bash-")));
    }

    /// Runs `echo rc=$?` at the host prompt and waits for the code of the last command.
    pub fn expect_exit_code(&self, tag: &str, code: i32) {
        self.send(&format!("echo {tag}=$?"));
        self.wait_for("the exit code comes back", |s| s.contains(&format!("{tag}={code}")));
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = run(Command::new("tmux").args(["kill-session", "-t", &self.session]));
    }
}

/// `run -it` with a resize and an exit code, then `exec -it` into `running`.
pub fn interactive_session(tty: &Tty, running: &str) {
    tty.send(&format!("{DOCKER_CLI} run -it --rm --name inter busybox sh"));
    tty.wait_for("the container shell prompts", |s| s.contains("/ #"));
    tty.send("echo got-$((6*7))");
    tty.wait_for("the shell answers", |s| s.contains("got-42"));
    // The CLI sends its resize after `start`, so the shell may have run before it landed.
    wait_until(Duration::from_secs(10), "the resize reaches the TTY", || {
        tty.send("stty size");
        std::thread::sleep(Duration::from_millis(300));
        tty.screen().contains("25 100")
    });
    tty.send("exit 9");
    tty.wait_host_prompt("the CLI returns");
    tty.expect_exit_code("rc", 9);

    // Earlier prompts would satisfy the wait below: start from an empty screen.
    tty.clear();
    tty.send(&format!("{DOCKER_CLI} exec -it {running} sh"));
    tty.wait_for("exec shell prompts", |s| s.contains("/ #"));
    tty.send("hostname; exit 5");
    tty.wait_host_prompt("the exec CLI returns");
    tty.expect_exit_code("exec-rc", 5);
}

/// `docker attach` to `name`, a container started with `-dit … sh`: type into its shell and
/// leave with `exit 3`, whose code the CLI must return.
pub fn attach_session(tty: &Tty, name: &str) {
    tty.send(&format!("{DOCKER_CLI} attach {name}"));
    // Attach shows no prompt until something is typed.
    wait_until(Duration::from_secs(20), "the attached shell answers", || {
        tty.send("echo attached-$((3*5))");
        std::thread::sleep(Duration::from_millis(300));
        tty.screen().contains("attached-15")
    });
    tty.send("exit 3");
    tty.wait_host_prompt("the attach CLI returns");
    tty.expect_exit_code("attach-rc", 3);
}
