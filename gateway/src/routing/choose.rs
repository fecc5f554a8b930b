//! Ranking of usable sidecars for one request: pure functions over a snapshot, so each
//! policy is tested by value. The pool then tries the ranking in order and takes the first
//! sidecar with a free slot.

use crate::config::RoutingPolicy;

use super::hash::score;

/// What routing needs to know about one usable sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Hash of the sidecar's stable name (the same on every gateway replica).
    pub name_hash: u64,
    /// Its load: the larger of this gateway's chats on it and the sidecar's own count
    /// over all gateways (`Sidecar::load`).
    pub load: u32,
}

/// Indices into `candidates`, best first; every candidate appears once.
pub fn rank(
    policy: RoutingPolicy,
    key: u64,
    load_factor: f64,
    rr_ticket: usize,
    candidates: &[Candidate],
) -> Vec<usize> {
    match policy {
        RoutingPolicy::Sticky => bounded_rendezvous(key, load_factor, candidates),
        RoutingPolicy::LeastInFlight => least_in_flight(key, candidates),
        RoutingPolicy::RoundRobin => round_robin(rr_ticket, candidates.len()),
    }
}

/// Rendezvous order of the candidates for `key` (highest score first).
pub fn rendezvous(key: u64, candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(score(key, candidates[i].name_hash)));
    order
}

/// The most chats one sidecar may carry before the next choice is used (consistent hashing
/// with bounded loads): `ceil(factor * (total + 1) / n)`, counting the request at hand.
pub fn load_bound(load_factor: f64, total_load: u64, n: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let avg = (total_load + 1) as f64 / n as f64;
    (load_factor * avg).ceil().max(1.0) as u64
}

/// Rendezvous order, except that sidecars at or over the load bound move behind the
/// others, those ordered by least in flight.
pub fn bounded_rendezvous(key: u64, load_factor: f64, candidates: &[Candidate]) -> Vec<usize> {
    let total: u64 = candidates.iter().map(|c| u64::from(c.load)).sum();
    let bound = load_bound(load_factor, total, candidates.len());
    let (mut under, mut over): (Vec<usize>, Vec<usize>) = rendezvous(key, candidates)
        .into_iter()
        .partition(|&i| u64::from(candidates[i].load) < bound);
    over.sort_by_key(|&i| candidates[i].load);
    under.append(&mut over);
    under
}

/// Least loaded first; ties broken by rendezvous order so equal loads still spread.
pub fn least_in_flight(key: u64, candidates: &[Candidate]) -> Vec<usize> {
    let mut order = rendezvous(key, candidates);
    order.sort_by_key(|&i| candidates[i].load);
    order
}

pub fn round_robin(ticket: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let start = ticket % n;
    (0..n).map(|i| (start + i) % n).collect()
}

#[cfg(test)]
mod tests {
    use super::super::hash::fnv1a;
    use super::*;
    use std::collections::HashMap;

    fn nodes(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                name_hash: fnv1a(&[format!("sidecar-{i}").as_bytes()]),
                load: 0,
            })
            .collect()
    }

    fn key(i: u64) -> u64 {
        fnv1a(&[&i.to_le_bytes()])
    }

    #[test]
    fn rendezvous_spreads_keys_evenly() {
        let c = nodes(5);
        let mut counts = [0usize; 5];
        for k in 0..10_000 {
            counts[rendezvous(key(k), &c)[0]] += 1;
        }
        for n in counts {
            assert!((1_500..2_500).contains(&n), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn only_the_keys_of_a_leaving_node_move() {
        let all = nodes(5);
        let without: Vec<Candidate> = all.iter().copied().filter(|c| *c != all[2]).collect();
        for k in 0..5_000 {
            let before = all[rendezvous(key(k), &all)[0]];
            let after = without[rendezvous(key(k), &without)[0]];
            if before != all[2] {
                assert_eq!(before, after, "key {k} moved although its node stayed");
            }
        }
    }

    #[test]
    fn rank_does_not_depend_on_candidate_order() {
        let c = nodes(6);
        let mut reversed = c.clone();
        reversed.reverse();
        for k in 0..1_000 {
            let a = c[rendezvous(key(k), &c)[0]];
            let b = reversed[rendezvous(key(k), &reversed)[0]];
            assert_eq!(a, b);
        }
    }

    #[test]
    fn bounded_load_never_exceeds_the_bound() {
        // Place many requests one by one (all staying in flight) with the same hot key:
        // the load of every node stays within ceil(factor * average).
        let factor = 1.25;
        let mut c = nodes(4);
        for placed in 0..200u64 {
            let first = bounded_rendezvous(key(7), factor, &c)[0];
            c[first].load += 1;
            let bound = load_bound(factor, placed, c.len());
            assert!(
                u64::from(c[first].load) <= bound,
                "load {} over bound {bound}",
                c[first].load
            );
        }
        // A hot key spills over only as far as the bound demands: no node carries more
        // than factor x average at the end.
        let max = c.iter().map(|x| u64::from(x.load)).max().unwrap_or(0);
        assert!(
            max <= load_bound(factor, 199, c.len()),
            "over the bound: {c:?}"
        );
        assert!(
            c.iter().all(|x| x.load > 0),
            "the hot key spilled over to every node: {c:?}"
        );
    }

    #[test]
    fn light_load_keeps_the_preferred_node() {
        let c = nodes(4);
        for k in 0..1_000 {
            assert_eq!(
                bounded_rendezvous(key(k), 1.25, &c)[0],
                rendezvous(key(k), &c)[0]
            );
        }
    }

    #[test]
    fn every_policy_returns_a_permutation() {
        let mut c = nodes(5);
        c[1].load = 3;
        c[3].load = 1;
        for policy in [
            RoutingPolicy::Sticky,
            RoutingPolicy::LeastInFlight,
            RoutingPolicy::RoundRobin,
        ] {
            for t in 0..20 {
                let mut r = rank(policy, key(t as u64), 1.25, t, &c);
                r.sort_unstable();
                assert_eq!(r, vec![0, 1, 2, 3, 4]);
            }
        }
    }

    #[test]
    fn least_in_flight_and_round_robin() {
        let mut c = nodes(3);
        c[0].load = 2;
        c[1].load = 0;
        c[2].load = 1;
        assert_eq!(least_in_flight(key(1), &c), vec![1, 2, 0]);
        let firsts: HashMap<usize, usize> = (0..30).fold(HashMap::new(), |mut m, t| {
            *m.entry(round_robin(t, 3)[0]).or_default() += 1;
            m
        });
        assert_eq!(
            firsts.values().copied().collect::<Vec<_>>(),
            vec![10, 10, 10]
        );
    }
}
