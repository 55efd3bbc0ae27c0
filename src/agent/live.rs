//! The agent sessions live in this process. Deploys drain through it: once the process is
//! draining it takes no new calls (and `/readyz` says so), live sessions go on, and when the
//! grace period is over every session is told to wind down (say a short goodbye, end with
//! `server_shutdown`). Its `owner` name (node id plus a per-process suffix) claims calls in
//! storage under a lease (`session_lease_secs`), renewed every third of it while the process
//! lives, so restart recovery on any node tells a dead session from a live one. `/metrics` reads
//! its counters: live calls, agent replies, and the time from the caller's words to the model's
//! first token.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::domain::ids::CallId;
use crate::telemetry::Histogram;

pub struct LiveSessions {
    owner: String,
    lease: Duration,
    calls: Mutex<HashSet<CallId>>,
    emptied: Notify,
    draining: AtomicBool,
    wind_down: watch::Sender<bool>,
    replies: AtomicU64,
    first_token: Mutex<Histogram>,
}

/// A session's place in the registry; leaving (drop) removes it.
pub struct LiveSession {
    registry: Arc<LiveSessions>,
    call: CallId,
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let mut calls = self.registry.calls.lock().expect("registry lock");
        calls.remove(&self.call);
        if calls.is_empty() {
            self.registry.emptied.notify_waiters();
        }
    }
}

impl LiveSessions {
    /// The registry of a process on node `node_id`, whose claims on calls last `lease` without
    /// renewal.
    pub fn new(node_id: &str, lease: Duration) -> Arc<Self> {
        let mut suffix = [0u8; 4];
        getrandom::getrandom(&mut suffix).expect("the operating system provides randomness");
        let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        Arc::new(Self {
            owner: format!("{node_id}/{suffix}"),
            lease,
            calls: Mutex::default(),
            emptied: Notify::new(),
            draining: AtomicBool::new(false),
            wind_down: watch::channel(false).0,
            replies: AtomicU64::new(0),
            first_token: Mutex::default(),
        })
    }

    /// This process's name in session claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long a claim on a call lasts without renewal: recovery waits this long after a
    /// process dies before it settles that process's calls.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often this process renews the leases of its live calls.
    pub fn lease_renewal(&self) -> Duration {
        self.lease / 3
    }

    /// Registers the session of `call` for as long as the returned guard lives.
    pub fn enter(self: &Arc<Self>, call: CallId) -> LiveSession {
        self.calls.lock().expect("registry lock").insert(call);
        LiveSession { registry: self.clone(), call }
    }

    pub fn count(&self) -> usize {
        self.calls.lock().expect("registry lock").len()
    }

    /// From now on the node takes no new calls.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Tells every session to end politely as soon as the agent is not mid-sentence.
    pub fn wind_down(&self) {
        self.wind_down.send_replace(true);
    }

    /// Becomes `true` when the sessions must wind down.
    pub fn wind_down_signal(&self) -> watch::Receiver<bool> {
        self.wind_down.subscribe()
    }

    /// Resolves once no session is live.
    pub async fn until_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.count() == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// Counts an agent reply and the time its first token took, when it has one.
    pub fn record_reply(&self, first_token: Option<Duration>) {
        self.replies.fetch_add(1, Ordering::Relaxed);
        if let Some(wait) = first_token {
            self.first_token.lock().expect("metrics lock").observe(wait.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of the registry's figures.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# HELP switchboard_live_calls Agent sessions live on this node.\n# TYPE switchboard_live_calls gauge\nswitchboard_live_calls {}\n\
             # HELP switchboard_draining Whether this node is draining (1) for a shutdown.\n# TYPE switchboard_draining gauge\nswitchboard_draining {}\n\
             # HELP switchboard_agent_replies_total Agent replies produced by the model.\n# TYPE switchboard_agent_replies_total counter\nswitchboard_agent_replies_total {}\n\
             # HELP switchboard_model_first_token_seconds Time from the caller's words to the model's first token.\n# TYPE switchboard_model_first_token_seconds histogram\n",
            self.count(),
            u8::from(self.is_draining()),
            self.replies.load(Ordering::Relaxed),
        );
        self.first_token.lock().expect("metrics lock").render("switchboard_model_first_token_seconds", "", &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_registry_empties_when_the_last_session_leaves() {
        let live = LiveSessions::new("node-a", Duration::from_secs(60));
        assert!(
            live.owner().starts_with("node-a/") && live.owner() != LiveSessions::new("node-a", Duration::from_secs(60)).owner(),
            "one name per process"
        );
        let first = live.enter(CallId::generate());
        let second = live.enter(CallId::generate());
        assert_eq!(live.count(), 2);
        let waiter = tokio::spawn({
            let live = live.clone();
            async move { live.until_empty().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("resolves once empty").unwrap();
        live.record_reply(Some(Duration::from_millis(300)));
        let text = live.render();
        assert!(text.contains("switchboard_live_calls 0"), "{text}");
        assert!(text.contains("switchboard_agent_replies_total 1"), "{text}");
        assert!(text.contains("switchboard_model_first_token_seconds_bucket{le=\"0.5\"} 1"), "{text}");
    }
}
