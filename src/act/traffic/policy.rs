//! The pure part of a traffic shift: given the current weights, move `step`
//! points from the alerting variant to the destination, within bounds, so the
//! result sums to 100. No I/O; every invariant is tested here.

use std::collections::BTreeMap;

/// Variant → weight, in percent after [`normalise`].
pub type WeightMap = BTreeMap<String, u32>;

/// Relative weights (Seldon's are) → percentages summing to exactly 100
/// (largest remainder). All-zero weights stay all zero.
pub fn normalise(weights: &WeightMap) -> WeightMap {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if total == 0 || total == 100 {
        return weights.clone();
    }
    let mut out = WeightMap::new();
    let mut rest: Vec<(u64, &String)> = Vec::new();
    let mut given = 0u32;
    for (name, w) in weights {
        let scaled = u64::from(*w) * 100;
        let floor = (scaled / total) as u32;
        given += floor;
        out.insert(name.clone(), floor);
        rest.push((scaled % total, name));
    }
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, name) in rest.into_iter().take((100 - given) as usize) {
        if let Some(w) = out.get_mut(name) {
            *w += 1;
        }
    }
    out
}

/// Bounds of a shift.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub step: u32,
    pub min_weight: u32,
    pub max_weight: u32,
}

/// Why no weight moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoShift {
    /// The alerting variant is not in the target.
    UnknownVariant(String),
    /// The destination is not in the target.
    UnknownDestination(String),
    /// The alerting variant is the destination: traffic never moves onto it.
    DestinationIsAlerting(String),
    /// Already at the bounds: nothing can move.
    Nothing,
}

/// Moves up to `step` points from `from` to `to`: `from` never below
/// `min_weight`, `to` never above `max_weight`. Other variants keep theirs.
pub fn shift(current: &WeightMap, from: &str, to: &str, b: Bounds) -> Result<WeightMap, NoShift> {
    let weights = normalise(current);
    let Some(&w_from) = weights.get(from) else {
        return Err(NoShift::UnknownVariant(from.to_owned()));
    };
    let Some(&w_to) = weights.get(to) else {
        return Err(NoShift::UnknownDestination(to.to_owned()));
    };
    if from == to {
        return Err(NoShift::DestinationIsAlerting(to.to_owned()));
    }
    let can_give = w_from.saturating_sub(b.min_weight);
    let can_take = b.max_weight.saturating_sub(w_to);
    let moved = b.step.min(can_give).min(can_take);
    if moved == 0 {
        return Err(NoShift::Nothing);
    }
    let mut out = weights;
    out.insert(from.to_owned(), w_from - moved);
    out.insert(to.to_owned(), w_to + moved);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(pairs: &[(&str, u32)]) -> WeightMap {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const B: Bounds = Bounds {
        step: 30,
        min_weight: 0,
        max_weight: 100,
    };

    #[test]
    fn moves_step_points_from_the_alerting_variant_to_the_destination() {
        let before = w(&[("baseline", 70), ("enhanced", 30)]);
        assert_eq!(
            shift(&before, "enhanced", "baseline", B),
            Ok(w(&[("baseline", 100), ("enhanced", 0)]))
        );
        let small = Bounds { step: 10, ..B };
        assert_eq!(
            shift(&before, "enhanced", "baseline", small),
            Ok(w(&[("baseline", 80), ("enhanced", 20)]))
        );
    }

    #[test]
    fn relative_weights_are_normalised_to_100() {
        assert_eq!(
            normalise(&w(&[("a", 1), ("b", 1), ("c", 1)])),
            w(&[("a", 34), ("b", 33), ("c", 33)])
        );
        assert_eq!(
            normalise(&w(&[("a", 7), ("b", 3)])),
            w(&[("a", 70), ("b", 30)])
        );
        let after = shift(
            &w(&[("a", 2), ("b", 1)]),
            "b",
            "a",
            Bounds { step: 10, ..B },
        )
        .unwrap();
        assert_eq!(after, w(&[("a", 77), ("b", 23)]));
    }

    #[test]
    fn bounds_are_respected_and_a_no_op_is_reported() {
        let before = w(&[("baseline", 70), ("enhanced", 30)]);
        let b = Bounds {
            step: 30,
            min_weight: 10,
            max_weight: 90,
        };
        assert_eq!(
            shift(&before, "enhanced", "baseline", b),
            Ok(w(&[("baseline", 90), ("enhanced", 10)]))
        );
        let at_min = w(&[("baseline", 90), ("enhanced", 10)]);
        assert_eq!(
            shift(&at_min, "enhanced", "baseline", b),
            Err(NoShift::Nothing)
        );
    }

    #[test]
    fn unknown_variants_and_moving_onto_the_alerting_variant_are_refused() {
        let before = w(&[("baseline", 70), ("enhanced", 30)]);
        assert_eq!(
            shift(&before, "ghost", "baseline", B),
            Err(NoShift::UnknownVariant("ghost".into()))
        );
        assert_eq!(
            shift(&before, "enhanced", "ghost", B),
            Err(NoShift::UnknownDestination("ghost".into()))
        );
        assert_eq!(
            shift(&before, "baseline", "baseline", B),
            Err(NoShift::DestinationIsAlerting("baseline".into()))
        );
    }

    #[test]
    fn invariants_hold_for_every_small_case() {
        // Exhaustive over 3 variants with weights 0..=10 (relative), every
        // (from, to) pair and a few bound settings.
        let names = ["a", "b", "c"];
        for x in 0..=10u32 {
            for y in 0..=10u32 {
                for z in 0..=10u32 {
                    if x + y + z == 0 {
                        continue;
                    }
                    let before = w(&[("a", x), ("b", y), ("c", z)]);
                    let norm = normalise(&before);
                    assert_eq!(norm.values().sum::<u32>(), 100);
                    for from in names {
                        for to in names {
                            for b in [
                                B,
                                Bounds {
                                    step: 7,
                                    min_weight: 5,
                                    max_weight: 80,
                                },
                            ] {
                                let Ok(after) = shift(&before, from, to, b) else {
                                    continue;
                                };
                                assert_eq!(
                                    after.values().sum::<u32>(),
                                    100,
                                    "{before:?} {from}->{to}"
                                );
                                assert!(
                                    after[from] < norm[from],
                                    "the alerting variant is reduced"
                                );
                                assert!(after[to] > norm[to], "only the destination gains");
                                assert!(after[from] >= b.min_weight.min(norm[from]));
                                assert!(after[to] <= b.max_weight.max(norm[to]));
                                for other in names.iter().filter(|n| **n != from && **n != to) {
                                    assert_eq!(after[*other], norm[*other]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
