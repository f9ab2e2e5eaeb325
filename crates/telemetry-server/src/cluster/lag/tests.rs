//! Unit tests of the consumer lag readings: which partitions are kept, what a failed read keeps.

use std::collections::BTreeMap;

use crate::cluster::lag::{ConsumerLag, PartitionLag};

fn reading(lag: u64) -> PartitionLag {
    PartitionLag { lag, redelivered: 0 }
}

#[test]
fn readings_follow_the_partitions_held_and_a_failed_reading_keeps_the_last() {
    let lag = ConsumerLag::default();
    lag.update(&[1, 2], BTreeMap::from([(1, reading(5)), (2, reading(7))]));
    assert_eq!(lag.readings(), BTreeMap::from([(1, reading(5)), (2, reading(7))]));
    // Partition 2 not read this time (NATS slow): its last reading stays.
    lag.update(&[1, 2], BTreeMap::from([(1, reading(0))]));
    assert_eq!(lag.readings(), BTreeMap::from([(1, reading(0)), (2, reading(7))]));
    // Partition 1 given back, 3 taken and not read yet.
    lag.update(&[2, 3], BTreeMap::new());
    assert_eq!(lag.readings(), BTreeMap::from([(2, reading(7))]));
}
