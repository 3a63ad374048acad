//! The engine under a memory limit: what cannot fit spills, or is computed another way.

use crate::common::{Options, TestServer};

/// A join whose hash table does not fit its share of the pool (DataFusion's hash join cannot
/// spill): computed again with sort-merge joins, whose sorts spill, it answers; with too little
/// memory even for that, 53200.
#[tokio::test]
async fn a_hash_join_short_of_memory_is_computed_again_with_sort_merge_joins() {
    let join = "SELECT count(*), sum(a.x) FROM generate_series(1, 4000000) a(x) \
                JOIN generate_series(1, 4000000) b(y) ON a.x = b.y";
    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.memory_limit = Some("64MiB".into());
    })
    .await;
    let c = s.connect().await;
    let row = c.query_one(join, &[]).await.expect("the join answers");
    assert_eq!(row.get::<_, i64>(0), 4_000_000);
    assert_eq!(row.get::<_, i64>(1), 4_000_000 * 4_000_001 / 2);
    s.stop().await;

    let s = TestServer::start_with(Options::default(), |c| {
        c.engine.memory_limit = Some("8MiB".into());
    })
    .await;
    let c = s.connect().await;
    let e = c.query_one(join, &[]).await.expect_err("too little memory");
    assert_eq!(e.code().map(|c| c.code()), Some("53200"), "{e:?}");
    s.stop().await;
}
