//! Re-reads of one container, coalesced: a re-read asked for while another of the same
//! container runs is served by one more read that starts after it, however many were asked
//! for meanwhile: a burst of events for one container (each awaited before it is published)
//! costs two reads, not one per event.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::debug;

use super::Cluster;

/// The re-reads asked for, by node key and container ID.
#[derive(Default)]
pub(crate) struct Rereads(Mutex<HashMap<(String, String), Reread>>);

struct Reread {
    /// Requests so far, numbered from 1.
    asked: u64,
    /// The highest request a finished read started after.
    served: watch::Sender<u64>,
}

impl Cluster {
    /// Re-reads container `id` on node `key` (see [`Cluster::read_container`]) in a read that
    /// starts after this call; returns once that read is done, whether it failed or not (a
    /// failure is logged: the next event or refresh settles it).
    pub async fn refresh_container(&self, key: &str, id: &str) {
        self.metrics().rereads_asked.inc();
        let slot = (key.to_string(), id.to_string());
        let (ticket, mut served) = {
            let mut rereads = self.shared.rereads.0.lock();
            match rereads.get_mut(&slot) {
                Some(r) => {
                    r.asked += 1;
                    (r.asked, r.served.subscribe())
                }
                None => {
                    let (served, watcher) = watch::channel(0);
                    rereads.insert(slot.clone(), Reread { asked: 1, served });
                    // Spawned: a caller that goes away (its event stream ended) must not leave
                    // the others waiting on a read nobody runs.
                    let cluster = self.clone();
                    tokio::spawn(async move { cluster.serve_rereads(slot).await });
                    (1, watcher)
                }
            }
        };
        // An error only if the reader is gone (the runtime shuts down).
        let _ = served.wait_for(|s| *s >= ticket).await;
    }

    /// Reads until a read has started after every request made so far.
    async fn serve_rereads(&self, slot: (String, String)) {
        let mut serving = Serving { cluster: self, slot: Some(slot.clone()) };
        let (key, id) = (&slot.0, &slot.1);
        loop {
            let Some(upto) = self.shared.rereads.0.lock().get(&slot).map(|r| r.asked) else { return };
            self.metrics().rereads.inc();
            if let Err(e) = Box::pin(self.read_container(key, id)).await {
                debug!(addr = %key, id = %id, error = %e, "Re-read of a container failed.");
            }
            let mut rereads = self.shared.rereads.0.lock();
            let Some(r) = rereads.get(&slot) else { return };
            r.served.send_replace(upto);
            if r.asked == upto {
                rereads.remove(&slot);
                serving.slot = None;
                return;
            }
        }
    }
}

/// Takes a reader's slot out if the reader stops early (a panic), so that its waiters wake and
/// the next request starts a reader again.
struct Serving<'a> {
    cluster: &'a Cluster,
    slot: Option<(String, String)>,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.cluster.shared.rereads.0.lock().remove(&slot);
        }
    }
}
