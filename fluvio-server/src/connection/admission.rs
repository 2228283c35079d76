//! Connections that have not said who they are yet: a budget of their own,
//! apart from the authenticated connections `--max-connections` counts.
//!
//! On a server that requires credentials (or serves TLS), a connection is
//! "before login" from its accept until it has authenticated (or finished
//! its handshake, where that is all it needs). Such connections cost the
//! server little but are free to open, so they are counted apart: an
//! anonymous flood can fill this budget, never the one authenticated
//! clients use.
//!
//! When the budget is full, a new connection is not refused: the oldest
//! connection before login is closed to make room, from the new one's own
//! address first. An honest client logs in within a round trip or two, so
//! it is the flood's idle sockets that are closed, and a client that
//! connects while a flood goes on still gets in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The connections before login, oldest first.
pub struct PreLogin {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Each connection's address and the sender that closes it, by age.
    waiting: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
    evicted: u64,
}

/// A place in the budget, given back when dropped (at login, or when the
/// connection ends); [`evicted`](Self::evicted) resolves when the server
/// needs the place for a newer connection.
pub struct PreLoginPass {
    owner: Arc<PreLogin>,
    id: u64,
    address: IpAddr,
    evicted: Option<oneshot::Receiver<()>>,
}

impl PreLogin {
    /// A budget of `max_total` connections before login, at most
    /// `max_per_address` of them from one address.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<PreLogin> {
        Arc::new(PreLogin {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a connection from `address`, closing the oldest one before
    /// login from the same address when that address has its most, or the
    /// oldest of all when the budget is full.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> PreLoginPass {
        let mut state = self.state.lock();
        let from_address = state.by_address.get(&address).map_or(0, BTreeSet::len);
        let oldest = if from_address >= self.max_per_address {
            state.by_address.get(&address).and_then(|ids| ids.first().copied())
        } else if state.waiting.len() >= self.max_total {
            state.waiting.keys().next().copied()
        } else {
            None
        };
        if let Some(oldest) = oldest {
            state.remove(oldest);
            state.evicted += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        state.waiting.insert(id, (address, evict));
        state.by_address.entry(address).or_default().insert(id);
        PreLoginPass { owner: Arc::clone(self), id, address, evicted: Some(evicted) }
    }

    /// Connections before login now.
    pub fn waiting(&self) -> usize {
        self.state.lock().waiting.len()
    }

    /// Connections closed so far to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.state.lock().evicted
    }
}

impl State {
    /// Forgets a connection; dropping its sender closes it if it waits.
    fn remove(&mut self, id: u64) {
        if let Some((address, _closes)) = self.waiting.remove(&id)
            && let Some(ids) = self.by_address.get_mut(&address)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
    }
}

impl PreLoginPass {
    /// Resolves once the connection was closed to make room (at once if it
    /// was already); never resolves otherwise.
    pub async fn evicted(&mut self) {
        match self.evicted.as_mut() {
            Some(receiver) => {
                // Only the server's side dropping the sender ends this.
                let _ = receiver.await;
                self.evicted = None;
            }
            None => std::future::pending().await,
        }
    }

    /// The address the connection comes from.
    pub fn address(&self) -> IpAddr {
        self.address
    }
}

impl Drop for PreLoginPass {
    fn drop(&mut self) {
        self.owner.state.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evicted_now(pass: &mut PreLoginPass) -> bool {
        matches!(pass.evicted.as_mut().map(|r| r.try_recv()), Some(Err(oneshot::error::TryRecvError::Closed)))
    }

    #[test]
    fn a_full_address_makes_room_from_its_own_oldest() {
        let budget = PreLogin::new(10, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut first = budget.admit(a);
        let mut second = budget.admit(a);
        let mut other = budget.admit(b);
        let mut third = budget.admit(a);
        assert!(evicted_now(&mut first), "the address's oldest makes room");
        assert!(!evicted_now(&mut second) && !evicted_now(&mut third) && !evicted_now(&mut other));
        assert_eq!((budget.waiting(), budget.evicted()), (3, 1));
        drop(first);
        assert_eq!(budget.waiting(), 3, "an evicted pass was forgotten already");
        drop((second, third, other));
        assert_eq!(budget.waiting(), 0);
        assert!(budget.state.lock().by_address.is_empty());
    }

    #[test]
    fn a_full_budget_makes_room_from_the_oldest_of_all() {
        let budget = PreLogin::new(3, 3);
        let addresses: Vec<IpAddr> = (1..=4).map(|i| format!("10.0.0.{i}").parse().unwrap()).collect();
        let mut passes: Vec<PreLoginPass> = addresses.iter().map(|a| budget.admit(*a)).collect();
        assert!(evicted_now(&mut passes[0]));
        assert!(passes[1..].iter_mut().all(|pass| !evicted_now(pass)));
        assert_eq!(budget.waiting(), 3);
        // Logging in gives the place back: no one else is closed.
        passes.remove(1);
        let mut fresh = budget.admit(addresses[0]);
        assert!(!evicted_now(&mut fresh));
        assert!(passes[1..].iter_mut().all(|pass| !evicted_now(pass)));
    }

    #[tokio::test]
    async fn an_evicted_connection_hears_of_it() {
        let budget = PreLogin::new(1, 1);
        let address: IpAddr = "127.0.0.1".parse().unwrap();
        let mut old = budget.admit(address);
        let _new = budget.admit(address);
        tokio::time::timeout(std::time::Duration::from_secs(5), old.evicted()).await.expect("told at once");
    }
}
