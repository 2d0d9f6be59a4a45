//! Which watches have listed everything: the flags behind the readiness probe and behind a
//! reconcile's trust in its caches.

use std::future::Future;

use tokio::sync::watch;

/// The "listed" flag of each watch of one controller, by watch name.
// Readiness comes from each watch's own InitDone, not from `Store::wait_until_ready`: that
// future keeps only the last waiter's waker (kube-runtime 5's DelayedInit over a oneshot), so
// awaiting it next to the controller's own wait can leave one of them asleep forever.
#[derive(Default)]
pub struct Listed {
    flags: Vec<(&'static str, watch::Receiver<bool>)>,
}

impl Listed {
    /// A new flag for the watch `name`, false until the watch sets it.
    pub fn flag(&mut self, name: &'static str) -> watch::Sender<bool> {
        let (sender, receiver) = watch::channel(false);
        self.flags.push((name, receiver));
        sender
    }

    /// Resolves once the watches `names` have all listed (every watch when `names` is empty).
    pub fn wait_for(&self, names: &[&str]) -> impl Future<Output = ()> + Send + use<> {
        let flags: Vec<watch::Receiver<bool>> = self
            .flags
            .iter()
            .filter(|(name, _)| names.is_empty() || names.contains(name))
            .map(|(_, flag)| flag.clone())
            .collect();
        async move {
            for mut flag in flags {
                let _ = flag.wait_for(|listed| *listed).await.map(drop);
            }
        }
    }

    /// A flag that turns true once the watches `names` have all listed.
    pub fn when(&self, names: &[&str]) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(false);
        let all = self.wait_for(names);
        tokio::spawn(async move {
            all.await;
            sender.send_replace(true);
        });
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_group_is_listed_once_each_of_its_watches_is() {
        let mut listed = Listed::default();
        let (a, b, c) = (listed.flag("a"), listed.flag("b"), listed.flag("c"));
        let mut ab = listed.when(&["a", "b"]);
        a.send_replace(true);
        c.send_replace(true);
        tokio::task::yield_now().await;
        assert!(!*ab.borrow(), "b has not listed");
        b.send_replace(true);
        ab.wait_for(|done| *done).await.unwrap();
        listed.wait_for(&[]).await;
    }
}
