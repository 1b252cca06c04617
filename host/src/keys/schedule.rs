//! Which key signs and which verify at a moment, and what a retirement
//! writes: decided from the stored rows alone, so it is tested without a
//! database or a clock.

use super::{KeyError, Retired};
use crate::storage::{KeyChange, StoredKey};

/// Which stored keys the policy gets at `now`, by index: the signing key
/// first, then every other key still verifying, newest first; `None` if no
/// key can sign. The signing key is the latest activated one not retired,
/// or, if none is active (the signing key was retired before its successor
/// activated), the newest pending one not retired, which then signs early.
/// Pending keys verify already, so a replica whose clock runs ahead does
/// not produce tokens the others refuse.
pub(super) fn arrange(keys: &[StoredKey], now: i64, retention: i64) -> Option<Vec<usize>> {
    let not_retired = |k: &StoredKey| k.retired_at.is_none_or(|r| r > now);
    let newest = |&i: &usize| (keys[i].activates_at, keys[i].created_at);
    let active = (0..keys.len())
        .filter(|&i| keys[i].activates_at <= now && not_retired(&keys[i]))
        .max_by_key(newest);
    let signer = active.or_else(|| {
        (0..keys.len())
            .filter(|&i| not_retired(&keys[i]))
            .max_by_key(newest)
    })?;
    let others = verifying(keys, now, retention)
        .into_iter()
        .filter(|&i| i != signer);
    Some(std::iter::once(signer).chain(others).collect())
}

/// The keys that verify at `now`, newest first.
pub(super) fn verifying(keys: &[StoredKey], now: i64, retention: i64) -> Vec<usize> {
    let mut verifying: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].retired_at.is_none_or(|r| r + retention > now))
        .collect();
    verifying.sort_by_key(|&i| std::cmp::Reverse((keys[i].activates_at, keys[i].created_at)));
    verifying
}

/// What retiring `kid` at `now` writes. A pending key is retired at once,
/// and a key whose retirement was set for its activation (the hand-over
/// its rotation planned) is retired when the pending key would have been
/// instead: never, unless a later rotation planned it. Refused if no key
/// would be left that is not retired (so none would sign, at some moment
/// from now on), or if there is no such key not retired already.
pub(super) fn plan_retirement(
    stored: &[StoredKey],
    kid: &str,
    now: i64,
) -> Result<(KeyChange, Retired), KeyError> {
    let key = stored
        .iter()
        .find(|k| k.kid == kid && k.retired_at.is_none_or(|r| r > now))
        .ok_or_else(|| KeyError::NoSuchKey(kid.to_owned()))?;
    let mut change = KeyChange::default();
    change.retire.push((kid.to_owned(), Some(now)));
    let pending = key.activates_at > now;
    if pending {
        for other in stored {
            if other.kid != kid && other.retired_at == Some(key.activates_at) {
                change.retire.push((other.kid.clone(), key.retired_at));
            }
        }
    }
    let retired_at = |k: &StoredKey| {
        change
            .retire
            .iter()
            .find(|(kid, _)| *kid == k.kid)
            .map_or(k.retired_at, |(_, at)| *at)
    };
    if !stored.iter().any(|k| retired_at(k).is_none()) {
        return Err(KeyError::LastSigner(kid.to_owned()));
    }
    let retired = if pending {
        Retired::Pending
    } else {
        Retired::Signing
    };
    Ok((change, retired))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, activates_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            algorithm: "HS256".into(),
            sealed: String::new(),
            created_at: 0,
            activates_at,
            retired_at,
        }
    }

    fn kids(keys: &[StoredKey], now: i64) -> Vec<&str> {
        arrange(keys, now, 100)
            .unwrap_or_default()
            .into_iter()
            .map(|i| keys[i].kid.as_str())
            .collect()
    }

    /// `keys` after `change`.
    fn apply(keys: &[StoredKey], change: &KeyChange) -> Vec<StoredKey> {
        keys.iter()
            .map(|k| {
                let mut k = k.clone();
                if let Some((_, at)) = change.retire.iter().find(|(kid, _)| *kid == k.kid) {
                    k.retired_at = *at;
                }
                k
            })
            .chain(change.insert.iter().cloned())
            .collect()
    }

    #[test]
    fn a_rotation_hands_over_at_activation() {
        // `old` was retired at the moment `new` activates (t = 50).
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        assert_eq!(
            kids(&keys, 10),
            ["old", "new"],
            "new verifies before it signs"
        );
        assert_eq!(kids(&keys, 50), ["new", "old"]);
        assert_eq!(
            kids(&keys, 149),
            ["new", "old"],
            "old verifies until its tokens expire"
        );
        assert_eq!(kids(&keys, 150), ["new"]);
    }

    #[test]
    fn the_latest_active_key_signs() {
        let keys = [row("a", 0, None), row("b", 20, None), row("c", 90, None)];
        assert_eq!(kids(&keys, 30), ["b", "c", "a"]);
        assert_eq!(kids(&keys, 95), ["c", "b", "a"]);
    }

    #[test]
    fn retiring_a_pending_key_undoes_its_rotation() {
        // `old` signs and hands over to `new` at 50; `new` is retired at 10.
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        let (change, retired) = plan_retirement(&keys, "new", 10).unwrap();
        assert_eq!(retired, Retired::Pending);
        let after = apply(&keys, &change);
        for now in [10, 49, 50, 51, 1_000, 1_000_000] {
            assert_eq!(kids(&after, now)[0], "old", "at {now}");
        }
        assert_eq!(
            kids(&after, 10),
            ["old", "new"],
            "new still verifies a while"
        );
        assert_eq!(kids(&after, 1_000), ["old"]);
    }

    #[test]
    fn retiring_a_pending_key_of_two_rotations_keeps_the_chain() {
        // Two rotations: `a` hands over to `b` at 50, `b` to `c` at 80.
        let keys = [
            row("a", 0, Some(50)),
            row("b", 50, Some(80)),
            row("c", 80, None),
        ];
        let (change, _) = plan_retirement(&keys, "b", 10).unwrap();
        let after = apply(&keys, &change);
        assert_eq!(kids(&after, 60)[0], "a", "a signs on in b's place");
        assert_eq!(kids(&after, 80)[0], "c");
        assert_eq!(kids(&after, 500), ["c"]);
    }

    #[test]
    fn no_retirement_leaves_the_ring_without_a_signer() {
        let keys = [row("old", 0, Some(50)), row("new", 50, None)];
        // Retiring both, one after the other: the second is refused.
        let (change, _) = plan_retirement(&keys, "new", 10).unwrap();
        let after = apply(&keys, &change);
        assert!(matches!(
            plan_retirement(&after, "old", 11),
            Err(KeyError::LastSigner(_))
        ));
        // The signing key may go while another key is due: that one signs early.
        let (change, retired) = plan_retirement(&keys, "old", 10).unwrap();
        assert_eq!(retired, Retired::Signing);
        let after = apply(&keys, &change);
        assert_eq!(kids(&after, 10), ["new", "old"]);
        assert!(matches!(
            plan_retirement(&after, "new", 11),
            Err(KeyError::LastSigner(_))
        ));
        // Unknown, or retired already.
        assert!(matches!(
            plan_retirement(&keys, "nope", 10),
            Err(KeyError::NoSuchKey(_))
        ));
        assert!(matches!(
            plan_retirement(&after, "old", 11),
            Err(KeyError::NoSuchKey(_))
        ));
    }

    #[test]
    fn a_ring_with_every_key_retired_has_no_signer() {
        let keys = [row("a", 0, Some(50)), row("b", 20, Some(10))];
        assert_eq!(arrange(&keys, 60, 100), None);
        // Never a retired key first, even while it verifies.
        assert_eq!(arrange(&keys, 5, 100).map(|o| o[0]), Some(0));
    }
}
