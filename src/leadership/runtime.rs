//! A runtime of its own for leadership: Raft's core, timers, heartbeats and RPC clients, and the
//! etcd lease's keep-alive run on a thread of their own, so that API load on the main runtime
//! (a large upload, a burst of lists) cannot delay a heartbeat past a lease and cost an
//! election.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The leadership runtime; its thread ends when this is dropped.
pub struct LeadershipRuntime {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl LeadershipRuntime {
    /// Starts the runtime on a thread named `swarm-leadership`.
    pub fn start() -> std::io::Result<LeadershipRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name("swarm-leadership".into()).spawn(move || {
            // Until the owner goes: tasks still here then are dropped with the runtime.
            let _ = runtime.block_on(stopped);
        })?;
        Ok(LeadershipRuntime { handle, _stop: stop })
    }

    /// Where to spawn onto it.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on it and waits for its output from any runtime.
    pub async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(fut).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!("the leadership runtime stopped"),
        }
    }
}
