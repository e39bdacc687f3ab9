//! Alertmanager's alert fingerprint, for payloads written by hand without one.

use super::Labels;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Prometheus separates label names and values with this byte when hashing.
const SEPARATOR: u8 = 0xff;

/// The FNV-1a 64 hash of the sorted label pairs, as Prometheus' `LabelSet.Fingerprint`
/// computes it, formatted as Alertmanager does (16 hex digits).
pub fn label_fingerprint(labels: &Labels) -> String {
    if labels.is_empty() {
        return format!("{FNV_OFFSET:016x}");
    }
    let mut hash = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    };
    // BTreeMap iterates in name order, which is the order Prometheus sorts by.
    for (name, value) in labels {
        feed(name.as_bytes());
        feed(&[SEPARATOR]);
        feed(value.as_bytes());
        feed(&[SEPARATOR]);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_fingerprints_alertmanager_sent_in_every_fixture() {
        for (name, body) in crate::testing_fixtures() {
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            for alert in v["alerts"].as_array().unwrap() {
                let labels: Labels = serde_json::from_value(alert["labels"].clone()).unwrap();
                assert_eq!(
                    label_fingerprint(&labels),
                    alert["fingerprint"].as_str().unwrap(),
                    "{name}"
                );
            }
        }
    }
}
