//! Nodes and the leader: every node records that it is alive once a second, and claims
//! the lead of the background duties (lease expiry, promotion, cron, pruning). The lead
//! is a lease on one row, judged by the database's clock: the leader renews it with each
//! beat; when it stops renewing (it died, or lost the database), another node's next beat
//! takes the row once it has expired. A clean shutdown gives the row up at once.
//!
//! A new leader's first duty is to fire every cron slot since its predecessor last
//! renewed: a change of leader is not downtime, so its slots are not misfires.

use super::Inner;
use super::tx::Tx;
use crate::{Node, StoreError};
use kairos_core::Timestamp;
use kairos_core::api::ClusterNode;
use std::sync::atomic::Ordering;
use uuid::Uuid;

/// How long a lead lasts without renewal. Beats come every second, so a dead leader is
/// replaced within this plus a second.
pub(crate) const LEAD_FOR_SECS: f64 = 5.0;
/// Nodes unseen for this long are forgotten.
const FORGET_AFTER: &str = "1 hour";

const RECORD_NODE: &str = "INSERT INTO nodes (id, address, started_at, last_seen_at) \
     VALUES ($1, $2, $3, kairos_now()) ON CONFLICT (id) DO UPDATE \
     SET address = excluded.address, last_seen_at = excluded.last_seen_at";

/// Claims or renews the lead; answers whether `node` holds it, and the predecessor's
/// (node, last renewal) as it was before this statement.
const CLAIM: &str = "WITH prev AS (SELECT node, renewed_at FROM leader WHERE role = 'duties'), \
     claimed AS (INSERT INTO leader (role, node, renewed_at, expires_at) \
       VALUES ('duties', $1, kairos_now(), kairos_now() + make_interval(secs => $2)) \
       ON CONFLICT (role) DO UPDATE SET node = excluded.node, \
         renewed_at = excluded.renewed_at, expires_at = excluded.expires_at \
       WHERE leader.node = excluded.node OR leader.expires_at <= kairos_now() \
       RETURNING node) \
     SELECT EXISTS (SELECT 1 FROM claimed), (SELECT node FROM prev), (SELECT renewed_at FROM prev)";

pub(crate) async fn beat(inner: &Inner, node: Node) -> Result<bool, StoreError> {
    let first: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&node.id, &node.address, &node.started_at];
    let (tx, _) = Tx::begin(inner, Some((RECORD_NODE, &first))).await?;
    let result = claim(&tx, &node).await;
    let leads = match result {
        Ok(l) => l,
        Err(e) => {
            tx.rollback().await;
            return Err(e);
        }
    };
    if let Some((prev, renewed_at)) = leads {
        if prev != Some(node.id) {
            // Slots since the predecessor's last renewal are this cluster's uptime.
            if let Some(since) = renewed_at {
                inner
                    .up_since
                    .fetch_min(since.as_microsecond(), Ordering::AcqRel);
            }
            tracing::info!(node = %node.id, address = %node.address, "this node leads the background duties now");
        }
        tx.execute(
            &format!(
                "DELETE FROM nodes WHERE last_seen_at < kairos_now() - interval '{FORGET_AFTER}'"
            ),
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(leads.is_some())
}

/// `Some(predecessor, its last renewal)` when `node` leads after this claim.
async fn claim(
    tx: &Tx,
    node: &Node,
) -> Result<Option<(Option<Uuid>, Option<Timestamp>)>, StoreError> {
    let rows = tx.query(CLAIM, &[&node.id, &LEAD_FOR_SECS]).await?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Backend("no claim answer".into()))?;
    let holds: bool = row.try_get(0)?;
    Ok(holds.then(|| (row.try_get(1).ok().flatten(), row.try_get(2).ok().flatten())))
}

pub(crate) async fn resign(inner: &Inner, node: Node) -> Result<(), StoreError> {
    let client = inner.connection().await?;
    let resign = client
        .prepare_cached("DELETE FROM leader WHERE role = 'duties' AND node = $1")
        .await?;
    let forget = client
        .prepare_cached("DELETE FROM nodes WHERE id = $1")
        .await?;
    let id: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&node.id];
    tokio::try_join!(client.execute(&resign, &id), client.execute(&forget, &id))?;
    Ok(())
}

pub(crate) async fn nodes(inner: &Inner) -> Result<Vec<ClusterNode>, StoreError> {
    let (tx, rows) = Tx::begin(
        inner,
        Some((
            "SELECT n.id, n.address, n.started_at, n.last_seen_at, \
             coalesce(l.node = n.id AND l.expires_at > kairos_now(), false) \
             FROM nodes n LEFT JOIN leader l ON l.role = 'duties' ORDER BY n.started_at, n.id",
            &[],
        )),
    )
    .await?;
    let nodes = rows
        .iter()
        .map(|r| {
            Ok(ClusterNode {
                id: r.try_get(0)?,
                address: r.try_get(1)?,
                started_at: r.try_get(2)?,
                last_seen_at: r.try_get(3)?,
                leader: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>();
    tx.rollback().await;
    nodes
}
