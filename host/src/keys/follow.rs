//! The task that keeps a running policy's keys in step with the ring.

use std::time::Duration;

use super::{KeyError, KeyRing};
use crate::clock::unix_now;
use crate::policy::{KeyAlgorithm, PolicyHandle, SigningKey};

/// What [`follow`] keeps in step with the database: the policy's keys.
pub trait KeyHolder: Send + Sync + 'static {
    /// The key ids held, the signing one first.
    fn key_ids(&self) -> Vec<String>;
    /// Replaces the keys, the signing one first (never empty).
    fn set_keys(&self, keys: Vec<SigningKey>);
}

impl KeyHolder for PolicyHandle {
    fn key_ids(&self) -> Vec<String> {
        self.signing_key_ids()
    }

    fn set_keys(&self, keys: Vec<SigningKey>) {
        self.set_signing_keys(keys);
    }
}

/// Keeps the policy's keys in step with the database: a rotation made by
/// any replica's CLI, and a pending key's activation, take effect within
/// `every`. A read that fails (or finds no key to sign with) is logged and
/// keeps the keys the policy has; the next tick tries again. Should the
/// follower ever panic, that is logged and it starts again. When the
/// signing key changes to one whose algorithm is not `wanted`, that is
/// logged as at start. Runs until dropped: the caller owns the task.
pub fn follow<H: KeyHolder>(
    ring: KeyRing,
    holder: H,
    every: Duration,
    wanted: KeyAlgorithm,
) -> impl Future<Output = ()> + Send + 'static {
    use futures_util::FutureExt;
    let ring = std::sync::Arc::new(ring);
    let holder = std::sync::Arc::new(holder);
    async move {
        loop {
            // Caught here rather than in a task of its own, so that
            // dropping this future stops the follower with it.
            let run = std::panic::AssertUnwindSafe(follow_keys(
                std::sync::Arc::clone(&ring),
                std::sync::Arc::clone(&holder),
                every,
                wanted,
            ));
            let reason = match run.catch_unwind().await {
                Err(reason) => reason,
                // It never returns.
                Ok(()) => return,
            };
            let reason = reason
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| reason.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(
                %reason,
                "the signing-key follower panicked; keeping the current keys and starting it again"
            );
            tokio::time::sleep(every).await;
        }
    }
}

async fn follow_keys<H: KeyHolder>(
    ring: std::sync::Arc<KeyRing>,
    holder: std::sync::Arc<H>,
    every: Duration,
    wanted: KeyAlgorithm,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let keys = match ring.current(unix_now()).await {
            Ok(keys) => keys,
            Err(e) => {
                report_failure(&e, &mut failing);
                continue;
            }
        };
        // Never handed on empty: the policy signs with the first key.
        let Some(signing) = keys.first() else {
            report_failure(&KeyError::NoSigner, &mut failing);
            continue;
        };
        if std::mem::take(&mut failing) {
            tracing::info!("the signing keys are readable again");
        }
        let kids: Vec<String> = keys.iter().map(|k| k.kid.clone()).collect();
        let held = holder.key_ids();
        if kids == held {
            continue;
        }
        tracing::info!(signing = %signing.kid, keys = kids.len(), "signing keys changed");
        if held.first() != Some(&signing.kid) {
            warn_unless_wanted(signing, wanted);
        }
        holder.set_keys(keys);
    }
}

/// Logs a failed read of the keys: as a warning the first time in a row,
/// then quietly, until a read succeeds.
fn report_failure(e: &KeyError, failing: &mut bool) {
    if *failing {
        tracing::debug!(error = %e, "cannot read the signing keys still; keeping the current ones");
    } else {
        tracing::warn!(error = %e, "cannot read the signing keys; keeping the current ones");
    }
    *failing = true;
}

/// Says so when the signing key's algorithm is not `--signing-algorithm`.
pub fn warn_unless_wanted(signing: &SigningKey, wanted: KeyAlgorithm) {
    if signing.algorithm != wanted {
        tracing::warn!(
            kid = %signing.kid,
            signing = %signing.algorithm,
            wanted = %wanted,
            "the signing key's algorithm is not --signing-algorithm; run `taskflow keys rotate` to add a key of that algorithm"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::key_id;
    use super::super::ring::tests::timings;
    use super::*;
    use crate::storage::{KeyChange, StoredKey};

    /// Holds keys like the policy; panics on its first change, to show the
    /// follower survives a panic.
    #[derive(Default)]
    struct Holder {
        keys: std::sync::Mutex<Vec<String>>,
        panicked: std::sync::atomic::AtomicBool,
    }

    impl KeyHolder for std::sync::Arc<Holder> {
        fn key_ids(&self) -> Vec<String> {
            self.keys.lock().unwrap().clone()
        }

        fn set_keys(&self, keys: Vec<SigningKey>) {
            if !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                panic!("a holder that fails once");
            }
            assert!(!keys.is_empty());
            *self.keys.lock().unwrap() = keys.into_iter().map(|k| k.kid).collect();
        }
    }

    #[tokio::test]
    async fn the_follower_survives_a_panic_and_an_unreadable_ring() {
        let (db, _dir) = crate::storage::test_database().await;
        let master = b"a master secret of 32 bytes or more".to_vec();
        let ring = KeyRing::new(db.clone(), master.clone(), timings());
        let holder = std::sync::Arc::new(Holder::default());
        let _follower = tokio::spawn(follow(
            ring,
            std::sync::Arc::clone(&holder),
            Duration::from_millis(20),
            KeyAlgorithm::Hs256,
        ));
        let wait_for = async |what: &str, check: &dyn Fn(&[String]) -> bool| {
            for _ in 0..250 {
                if check(&holder.key_ids()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("{what}: {:?}", holder.key_ids());
        };
        wait_for("the keys after a panic", &|ids| ids == [key_id(&master)]).await;

        // A row no secret unseals: reported, and the held keys stay.
        db.change_signing_keys(|_| {
            Ok::<_, KeyError>(KeyChange {
                insert: vec![StoredKey {
                    kid: "broken".into(),
                    algorithm: "HS256".into(),
                    sealed: "AAAA".into(),
                    created_at: 0,
                    activates_at: 0,
                    retired_at: None,
                }],
                retire: Vec::new(),
            })
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(holder.key_ids(), [key_id(&master)]);

        // Mended: followed again.
        let ring = KeyRing::new(db.clone(), master.clone(), timings());
        db.change_signing_keys(|_| {
            Ok::<_, KeyError>(KeyChange {
                insert: Vec::new(),
                retire: vec![("broken".into(), Some(0))],
            })
        })
        .await
        .unwrap();
        db.prune_signing_keys(unix_now()).await.unwrap();
        let added = ring
            .rotate(unix_now() - 10, KeyAlgorithm::Hs256)
            .await
            .unwrap();
        wait_for("the rotated key", &|ids| ids.first() == Some(&added.kid)).await;
    }
}
