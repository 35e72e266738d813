use proptest::prelude::*;

use super::*;

/// MurmurHash3_x86_32 reference values, as published with SMHasher's
/// verification and widely reproduced (e.g. the "MurmurHash3 test vectors"
/// answer on Stack Overflow).
#[test]
fn murmur3_matches_reference_vectors() {
    let cases: &[(&[u8], u32, u32)] = &[
        (b"", 0, 0),
        (b"", 1, 0x514e_28b7),
        (b"", 0xffff_ffff, 0x81f1_6f39),
        (&[0xff, 0xff, 0xff, 0xff], 0, 0x7629_3b50),
        (&[0x21, 0x43, 0x65, 0x87], 0, 0xf55b_516b),
        (&[0x21, 0x43, 0x65, 0x87], 0x5082_edee, 0x2362_f9de),
        (&[0x21, 0x43, 0x65], 0, 0x7e4a_8634),
        (&[0x21, 0x43], 0, 0xa0f7_b07a),
        (&[0x21], 0, 0x7266_1cf4),
        (&[0, 0, 0, 0], 0, 0x2362_f9de),
        (&[0, 0, 0], 0, 0x85f0_b427),
        (&[0, 0], 0, 0x30f4_c306),
        (&[0], 0, 0x514e_28b7),
        (b"aaaa", 0x9747_b28c, 0x5a97_808a),
        (b"aaa", 0x9747_b28c, 0x283e_0130),
        (b"aa", 0x9747_b28c, 0x5d21_1726),
        (b"a", 0x9747_b28c, 0x7fa0_9ea6),
        (b"abcd", 0x9747_b28c, 0xf047_8627),
        (b"abc", 0x9747_b28c, 0xc84a_62dd),
        (b"ab", 0x9747_b28c, 0x7487_5592),
        (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
        ("ππππππππ".as_bytes(), 0x9747_b28c, 0xd580_63c1),
        (
            b"The quick brown fox jumps over the lazy dog",
            0x9747_b28c,
            0x2fa8_26cd,
        ),
        (b"hello", 0, 0x248b_fa47),
    ];
    for (data, seed, expected) in cases {
        assert_eq!(
            murmur3_32(data, *seed),
            *expected,
            "murmur3_32({data:?}, {seed:#x})"
        );
    }
}

/// Preimages of the five boundary hashes, from flagd-testbed
/// `gherkin/targeting.feature` ("Fractional operator hash edge cases").
#[test]
fn murmur3_matches_flagd_boundary_preimages() {
    for (key, hash) in [
        ("ejOoVL", 0),
        ("bY9fO-", 1),
        ("SI7p-", 2_147_483_647),
        ("6LvT0", 2_147_483_648),
        ("ceQdGm", 4_294_967_295),
    ] {
        assert_eq!(murmur3_32(key.as_bytes(), 0), hash, "{key}");
    }
}

/// flagd's published v2 (`(hash * totalWeight) >> 32`) fractional vectors:
/// open-feature/flagd-testbed `evaluator/gherkin/fractional.feature` and
/// `gherkin/targeting.feature`, examples tagged `@fractional-v2`, with the flag
/// definitions in `evaluator/flags/testkit-flags.json` / `flags/custom-ops.json`.
/// A bucketing expression `cat(a, b)` is our `flag_key = a, sticky = b`; an
/// explicit `var targetingKey` hashes the key alone, i.e. an empty flag key.
#[test]
fn pick_weighted_matches_flagd_v2_vectors() {
    let suits = ["clubs", "diamonds", "hearts", "spades"];
    let quarters = [25, 25, 25, 25];
    type Case<'a> = (&'a str, &'a str, &'a [u32], &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        // fractional-flag: cat($flagd.flagKey, user.name)
        ("fractional-flag", "jack", &quarters, &suits, "hearts"),
        ("fractional-flag", "queen", &quarters, &suits, "spades"),
        ("fractional-flag", "ten", &quarters, &suits, "clubs"),
        ("fractional-flag", "nine", &quarters, &suits, "diamonds"),
        ("fractional-flag", "3", &quarters, &suits, "clubs"),
        // fractional-flag-shorthand: [["heads"], ["tails", 1]], flagKey + targetingKey
        (
            "fractional-flag-shorthand",
            "jon@company.com",
            &[1, 1],
            &["heads", "tails"],
            "heads",
        ),
        (
            "fractional-flag-shorthand",
            "jane@company.com",
            &[1, 1],
            &["heads", "tails"],
            "tails",
        ),
        // fractional-flag-{A,B}-shared-seed: cat("shared-seed", user.name)
        ("shared-seed", "seven", &quarters, &suits, "hearts"),
        ("shared-seed", "eight", &quarters, &suits, "diamonds"),
        ("shared-seed", "nine", &quarters, &suits, "clubs"),
        ("shared-seed", "two", &quarters, &suits, "spades"),
        // fractional-single-entry-flag
        (
            "fractional-single-entry-flag",
            "some-targeting-key",
            &[1],
            &["single"],
            "single",
        ),
        // fractional-hash-edge-flag: var targetingKey, [lower 50, upper 50]
        ("", "ejOoVL", &[50, 50], &["lower", "upper"], "lower"),
        ("", "bY9fO-", &[50, 50], &["lower", "upper"], "lower"),
        ("", "SI7p-", &[50, 50], &["lower", "upper"], "lower"),
        ("", "6LvT0", &[50, 50], &["lower", "upper"], "upper"),
        ("", "ceQdGm", &[50, 50], &["lower", "upper"], "upper"),
    ];
    for (flag_key, sticky, weights, variants, expected) in cases {
        let picked = pick_weighted(flag_key, sticky, weights).and_then(|i| variants.get(i));
        assert_eq!(picked, Some(expected), "{flag_key:?} + {sticky:?}");
        // The compiled config holds basis points: the same split scaled.
        let basis_points: Vec<u32> = weights
            .iter()
            .map(|w| w * 10_000 / weights.iter().sum::<u32>())
            .collect();
        if basis_points.iter().sum::<u32>() == 10_000 {
            let picked =
                pick_weighted(flag_key, sticky, &basis_points).and_then(|i| variants.get(i));
            assert_eq!(
                picked,
                Some(expected),
                "{flag_key:?} + {sticky:?} in basis points"
            );
        }
    }
}

/// Bucket values quoted in the comments of flagd-testbed's nested fractional
/// scenarios ("jon@company.com bv(100)=36", "user1 bv(100)=76") and of the
/// hash edge cases.
#[test]
fn bucket_matches_flagd_quoted_bucket_values() {
    assert_eq!(bucket("", "jon@company.com", 100), 36);
    assert_eq!(bucket("", "user1", 100), 76);
    assert_eq!(bucket("", "ejOoVL", 100), 0);
    assert_eq!(bucket("", "SI7p-", 100), 49);
    assert_eq!(bucket("", "6LvT0", 100), 50);
    assert_eq!(bucket("", "ceQdGm", 100), 99);
}

#[test]
fn zero_total_picks_nothing() {
    assert_eq!(pick_weighted("f", "u", &[]), None);
    assert_eq!(pick_weighted("f", "u", &[0, 0]), None);
    assert_eq!(pick_random(&[0], u32::MAX), None);
    assert_eq!(bucket("f", "u", 0), 0);
}

#[test]
fn pick_random_covers_the_whole_range() {
    let weights = [9_000, 0, 1_000];
    assert_eq!(pick_random(&weights, 0), Some(0));
    assert_eq!(pick_random(&weights, u32::MAX), Some(2));
    // ceil(0.9 * 2^32) is the first hash in the third range.
    assert_eq!(pick_random(&weights, 3_865_470_567), Some(2));
    assert_eq!(pick_random(&weights, 3_865_470_566), Some(0));
}

#[test]
fn huge_weights_do_not_overflow() {
    assert_eq!(pick_random(&[u32::MAX, u32::MAX], u32::MAX), Some(1));
    assert_eq!(pick_random(&[u32::MAX, u32::MAX], 0), Some(0));
}

#[test]
fn ten_thousand_users_split_within_one_and_a_half_points() {
    for weights in [
        [9_000u32, 1_000, 0],
        [3_333, 3_333, 3_334],
        [5_000, 2_500, 2_500],
    ] {
        let mut counts = [0u32; 3];
        for user in 0..10_000 {
            if let Some(i) = pick_weighted("summarizer-model", &format!("user-{user}"), &weights) {
                counts[i] += 1;
            }
        }
        for (count, weight) in counts.iter().zip(weights) {
            // Both are out of 10,000, so 150 is 1.5 points.
            assert!(count.abs_diff(weight) <= 150, "{counts:?} for {weights:?}");
        }
    }
}

fn weights_strategy() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(0u32..=10_000, 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pick_is_deterministic_and_lands_on_a_weighted_variant(
        key in ".{0,20}", sticky in ".{0,40}", weights in weights_strategy()
    ) {
        let first = pick_weighted(&key, &sticky, &weights);
        prop_assert_eq!(first, pick_weighted(&key, &sticky, &weights));
        let total: u32 = weights.iter().sum();
        match first {
            None => prop_assert_eq!(total, 0),
            Some(i) => prop_assert!(weights.get(i).is_some_and(|w| *w > 0)),
        }
    }

    #[test]
    fn raising_a_canary_keeps_its_users(
        key in "[a-z-]{1,20}", sticky in ".{0,40}", a in 0u32..=10_000, b in 0u32..=10_000
    ) {
        let (low, high) = (a.min(b), a.max(b));
        if pick_weighted(&key, &sticky, &[10_000 - low, low]) == Some(1) {
            prop_assert_eq!(pick_weighted(&key, &sticky, &[10_000 - high, high]), Some(1));
        }
    }

    #[test]
    fn scaling_all_weights_changes_no_pick(
        sticky in ".{0,40}", weights in weights_strategy(), factor in 1u32..=100
    ) {
        let scaled: Vec<u32> = weights.iter().map(|w| w * factor).collect();
        prop_assert_eq!(
            pick_weighted("flag", &sticky, &weights),
            pick_weighted("flag", &sticky, &scaled)
        );
    }

    #[test]
    fn bucket_stays_below_total(key in ".{0,20}", sticky in ".{0,20}", total in 1u32..) {
        prop_assert!(bucket(&key, &sticky, total) < total);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn many_keys_follow_the_weights(weights in prop::collection::vec(0u32..=100, 2..5), salt in "[a-z]{1,8}") {
        let total: u32 = weights.iter().sum();
        prop_assume!(total > 0);
        let users = 20_000u32;
        let mut counts = vec![0u32; weights.len()];
        for user in 0..users {
            if let Some(count) = pick_weighted(&salt, &user.to_string(), &weights).and_then(|i| counts.get_mut(i)) {
                *count += 1;
            }
        }
        for (count, weight) in counts.iter().zip(&weights) {
            let observed = f64::from(*count) / f64::from(users);
            let expected = f64::from(*weight) / f64::from(total);
            // Four standard deviations of a binomial share at p = 0.5.
            prop_assert!((observed - expected).abs() < 0.015, "{counts:?} vs {weights:?}");
        }
    }
}
