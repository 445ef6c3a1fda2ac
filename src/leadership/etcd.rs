//! Leader election through an etcd lease: campaign on `<prefix>/docker/swarm/leader` with the
//! advertise address as value, keep the lease alive every TTL/3, and hold leadership only until
//! shortly before the lease could expire on the server. SIGTERM resigns at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ResignOptions};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Leadership;
use crate::etcd::{EtcdMembers, MemberClient};

/// The election key this manager holds while it leads: set by the election, cleared on loss,
/// and read by the etcd store, whose writes hold only while that key does.
pub type Fence = Arc<Mutex<Option<Vec<u8>>>>;

/// What to campaign for, where.
#[derive(Debug, Clone)]
pub struct EtcdElection {
    /// The etcd members, one in use at a time.
    pub members: Arc<EtcdMembers>,
    /// The election name (`<prefix>/docker/swarm/leader`).
    pub key: String,
    /// This manager's advertise address: the value a leader publishes.
    pub advertise: String,
    /// Lease time to live.
    pub ttl: Duration,
    /// Holds our election key while we lead, fencing the store's writes.
    pub fence: Fence,
}

impl EtcdElection {
    /// Leadership ends this long before the lease could expire on the server: the server
    /// counts the TTL from when it received our keepalive, which is after we sent it, so a
    /// deadline computed from the send time is already early; the margin covers scheduling.
    fn margin(&self) -> Duration {
        (self.ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(2))
    }
}

/// Campaigns until `shutdown`, resigning at once if leading then; keeps following who leads
/// until `stop_observing`, so that a manager that resigned still passes requests on.
pub async fn run(
    e: EtcdElection,
    leadership: Leadership,
    shutdown: CancellationToken,
    stop_observing: CancellationToken,
) {
    let observer = tokio::spawn(observe(e.clone(), leadership.clone(), stop_observing));
    let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(200), e.ttl / 2);
    while !shutdown.is_cancelled() {
        let outcome = e
            .members
            .session(|member| campaign(&e, member, &leadership, &shutdown))
            .await
            .map_err(|x| x.to_string())
            .and_then(|led| led);
        match outcome {
            Ok(()) => break,
            Err(err) => {
                if leadership.is_leader() || *leadership.subscribe().borrow() == super::Role::Leader {
                    leadership.step_down(None);
                }
                warn!(error = %err, "Leader Election: campaign interrupted; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    let _ = observer.await;
}

/// Wait between attempts to renew through another member.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

fn failed(err: etcd_client::Error) -> String {
    err.to_string()
}

/// A granted lease, and when it was last known alive.
struct Lease {
    id: i64,
    ttl: Duration,
    margin: Duration,
    last_renewal: Arc<Mutex<Instant>>,
}

impl Lease {
    /// Until when a leader on this lease may act.
    fn deadline(&self) -> Instant {
        *self.last_renewal.lock() + self.ttl - self.margin
    }
}

/// One lease's life: grant, keep alive, campaign, lead until the lease is lost or shutdown.
async fn campaign(
    e: &EtcdElection,
    member: MemberClient,
    leadership: &Leadership,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut client: Client = member.client.clone();
    let ttl_secs = e.ttl.as_secs().max(2) as i64;
    let granted_at = Instant::now();
    let id = client.lease_grant(ttl_secs, None).await.map_err(failed)?.id();
    let lease = Lease {
        id,
        ttl: Duration::from_secs(ttl_secs as u64),
        margin: e.margin(),
        last_renewal: Arc::new(Mutex::new(granted_at)),
    };
    let stream = client.lease_keep_alive(id).await.map_err(failed)?;
    let keep_alive = keep_alive(e, &lease, stream, member, leadership);
    tokio::pin!(keep_alive);
    let leader_key = tokio::select! {
        r = &mut keep_alive => {
            give_up(e, &lease).await;
            return r;
        }
        r = win(e, client.clone(), &lease, leadership) => match r {
            Ok(key) => key,
            Err(err) => {
                // Our key may stand first in line: do not make the others wait out its lease.
                give_up(e, &lease).await;
                return Err(err);
            }
        },
        _ = shutdown.cancelled() => {
            let _ = client.lease_revoke(id).await;
            return Ok(());
        }
    };
    // Leading: until the lease is lost or we are asked to stop. Each way out clears the fence
    // before anything else, so that no store write is fenced on a leadership we gave up.
    // A stop asked for is a resignation, whatever else is ready.
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {
            *e.fence.lock() = None;
            // Hand over at once instead of letting the lease run out.
            leadership.step_down(None);
            if let Some(key) = leader_key {
                let _ = client.resign(Some(ResignOptions::new().with_leader(key))).await;
            }
            let _ = client.lease_revoke(id).await;
            info!("Leader Election: resigned.");
            Ok(())
        }
        r = &mut keep_alive => {
            *e.fence.lock() = None;
            leadership.step_down(None);
            r
        }
        // Renewals came too late: we stopped acting at the deadline, but a renewal that gets
        // through afterwards would keep the key, and nobody could lead. Give the lease up.
        _ = leadership.lapsed() => {
            *e.fence.lock() = None;
            leadership.step_down(None);
            give_up(e, &lease).await;
            Err("leadership lapsed: the lease was not renewed before its deadline".to_string())
        }
    }
}

/// Revokes `lease` through whichever member answers, within half its TTL: it deletes our
/// election key now instead of when the lease runs out.
async fn give_up(e: &EtcdElection, lease: &Lease) {
    let id = lease.id;
    let revoke = e.members.call(move |mut c| async move { c.lease_revoke(id).await });
    let _ = tokio::time::timeout(lease.ttl / 2, revoke).await;
}

/// Campaigns on `lease` until elected; then sets the fence and leads until the lease's deadline.
async fn win(
    e: &EtcdElection,
    mut client: Client,
    lease: &Lease,
    leadership: &Leadership,
) -> Result<Option<etcd_client::LeaderKey>, String> {
    let won = client.campaign(e.key.as_str(), e.advertise.as_str(), lease.id).await.map_err(failed)?;
    let deadline = lease.deadline();
    if Instant::now() >= deadline {
        return Err("elected on a lease that may already be gone".to_string());
    }
    *e.fence.lock() = won.leader().map(|k| k.key().to_vec());
    // The election key's creation revision: unique to this win, and larger for every later one.
    let term = won.leader().map_or(0, |k| k.rev()).max(0) as u64;
    leadership.became_leader(term, deadline);
    info!(lease = lease.id, term, "Leader Election: elected.");
    Ok(won.leader().cloned())
}

/// Renews `lease` every third of its TTL, moving to the next etcd member when one fails, and
/// extends a leader's deadline with each renewal. Returns once the lease is lost.
async fn keep_alive(
    e: &EtcdElection,
    lease: &Lease,
    stream: (etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream),
    mut renewing: MemberClient,
    leadership: &Leadership,
) -> Result<(), String> {
    let (mut keeper, mut responses) = stream;
    let mut pause = lease.ttl / 3;
    // The stream in hand failed: the next renewal goes through another member.
    let mut broken = false;
    loop {
        tokio::time::sleep(pause).await;
        let sent = Instant::now();
        if broken {
            // The member we renewed through may be gone while the lease lives on in the others.
            // Bounded by the deadline: past it, leading is over whatever the lease does.
            let switch = async {
                e.members.failed(&renewing).await;
                let next = e.members.client_within(lease.ttl / 4).await.ok()?;
                // Opening the stream renews the lease once.
                match tokio::time::timeout(lease.ttl / 4, next.client.clone().lease_keep_alive(lease.id)).await {
                    Ok(Ok(stream)) => Some(Ok((stream, next))),
                    Ok(Err(etcd_client::Error::LeaseKeepAliveError(m))) => Some(Err(m)),
                    _ => {
                        // Left on the next attempt.
                        renewing = next;
                        None
                    }
                }
            };
            match tokio::time::timeout_at(lease.deadline().into(), switch).await {
                Ok(Some(Ok(((k, r), next)))) => {
                    (keeper, responses, renewing) = (k, r, next);
                    broken = false;
                    renewed(lease, leadership, sent);
                    pause = lease.ttl / 3;
                }
                Ok(Some(Err(m))) => return Err(format!("lease expired: {m}")),
                Ok(None) => pause = RECONNECT_PAUSE,
                Err(_) => return Err("lease renewal failed: no etcd member renewed it before the deadline".into()),
            }
            continue;
        }
        // A renewal stuck on a dead member's connection must not outlast the lease.
        let exchange = async {
            keeper.keep_alive().await.map_err(failed)?;
            responses.message().await.map_err(failed)
        };
        match tokio::time::timeout(lease.ttl / 4, exchange).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                renewed(lease, leadership, sent);
                pause = lease.ttl / 3;
            }
            Ok(Ok(_)) => return Err("lease expired".into()),
            outcome => {
                if Instant::now() + RECONNECT_PAUSE >= lease.deadline() {
                    return Err(format!(
                        "lease renewal failed: {}",
                        outcome.map_or_else(|_| "timed out".to_string(), |r| r.err().unwrap_or_default())
                    ));
                }
                warn!("Leader Election: lease renewal failed; renewing through the next etcd member.");
                broken = true;
                pause = Duration::ZERO;
            }
        }
    }
}

/// Records a renewal sent at `sent`, extending a leader's deadline.
fn renewed(lease: &Lease, leadership: &Leadership, sent: Instant) {
    *lease.last_renewal.lock() = sent;
    if leadership.is_leader() {
        leadership.renewed(sent + lease.ttl - lease.margin);
    }
}

/// Follows the elected leader's address.
async fn observe(e: EtcdElection, leadership: Leadership, shutdown: CancellationToken) {
    loop {
        let (key, leadership) = (e.key.as_str(), &leadership);
        let observed = e.members.session(|member| async move {
            let mut client = member.client;
            // On etcd 3.4 this returns only once a leader exists: it runs in its own task.
            let mut stream = client.observe(key).await.map_err(failed)?;
            while let Some(resp) = stream.message().await.map_err(failed)? {
                if let Some(value) = resp.kv().and_then(|kv| kv.value_str().ok()) {
                    leadership.follow(Some(value.to_string()));
                }
            }
            Ok::<_, String>(())
        });
        let observed = tokio::select! {
            o = observed => o,
            _ = shutdown.cancelled() => return,
        };
        if let Err(err) = observed.map_err(|x| x.to_string()).and_then(|o| o) {
            warn!(error = %err, "Leader Election: observing the leader failed; retrying.");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
