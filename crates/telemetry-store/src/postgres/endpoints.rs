//! Webhook endpoints on PostgreSQL, and which instance's configuration lists which.
//!
//! Every change to endpoints or listings runs in a transaction holding `ENDPOINTS_LOCK`, so
//! that an instance deciding which configured endpoints no live instance lists sees every
//! listing committed before it, and none is committed while it decides.

use async_trait::async_trait;
use telemetry_core::UnixMillis;
use tokio_postgres::Row;

use super::{ENDPOINTS_LOCK, Failure, PostgresStore, enum_column};
use crate::model::{ConfiguredEndpoints, EndpointRecord, EndpointSource, Signing};
use crate::{EndpointStore, StoreError};

const ENDPOINT_COLUMNS: &str = "id, url, signing, api_key, secret, include_events, exclude_events, \
     enabled, source, created_at_ms";

fn endpoint_from_row(row: &Row) -> Result<EndpointRecord, Failure> {
    Ok(EndpointRecord {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        signing: enum_column(row, 2, Signing::parse)?,
        api_key: row.try_get(3)?,
        secret: row.try_get(4)?,
        include_events: row.try_get(5)?,
        exclude_events: row.try_get(6)?,
        enabled: row.try_get(7)?,
        source: enum_column(row, 8, EndpointSource::parse)?,
        created_at: UnixMillis(row.try_get(9)?),
    })
}

type Transaction<'a> = deadpool_postgres::Transaction<'a>;

/// Starts a transaction that holds [`ENDPOINTS_LOCK`].
async fn locked(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, Failure> {
    let transaction = client.transaction().await?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&ENDPOINTS_LOCK]).await?;
    Ok(transaction)
}

#[async_trait]
impl EndpointStore for PostgresStore {
    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at_ms, id"
                ))
                .await?;
            client
                .query(&statement, &[])
                .await?
                .iter()
                .map(endpoint_from_row)
                .collect::<Result<Vec<_>, Failure>>()
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn put_endpoint(&self, endpoint: EndpointRecord) -> Result<(), StoreError> {
        async {
            let mut client = self.client().await?;
            let transaction = locked(&mut client).await?;
            upsert_endpoint(&transaction, &endpoint).await?;
            transaction.commit().await?;
            Ok(())
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn delete_endpoint(
        &self,
        id: &str,
        now: UnixMillis,
    ) -> Result<Option<EndpointRecord>, StoreError> {
        async {
            let mut client = self.client().await?;
            let transaction = locked(&mut client).await?;
            let endpoint = transaction
                .query_opt(
                    &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
                    &[&id],
                )
                .await?
                .as_ref()
                .map(endpoint_from_row)
                .transpose()?;
            if endpoint.is_some() {
                remove_endpoint(&transaction, id, now).await?;
            }
            transaction.commit().await?;
            Ok(endpoint)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn sync_configured_endpoints(
        &self,
        configured: ConfiguredEndpoints,
    ) -> Result<Vec<String>, StoreError> {
        async {
            let mut client = self.client().await?;
            let transaction = locked(&mut client).await?;
            let now = configured.now.0;
            transaction
                .execute(
                    "DELETE FROM webhook_endpoint_listings WHERE instance_id = $1",
                    &[&configured.instance_id],
                )
                .await?;
            for endpoint in &configured.endpoints {
                upsert_endpoint(&transaction, endpoint).await?;
                transaction
                    .execute(
                        "INSERT INTO webhook_endpoint_listings (instance_id, endpoint_id, seen_at_ms) \
                         VALUES ($1, $2, $3) ON CONFLICT (instance_id, endpoint_id) \
                         DO UPDATE SET seen_at_ms = excluded.seen_at_ms",
                        &[&configured.instance_id, &endpoint.id, &now],
                    )
                    .await?;
            }
            transaction
                .execute(
                    "DELETE FROM webhook_endpoint_listings WHERE seen_at_ms < $1",
                    &[&now.saturating_sub(configured.liveness_ms)],
                )
                .await?;
            let unlisted: Vec<String> = transaction
                .query(
                    "SELECT id FROM webhook_endpoints WHERE source = $1 AND id NOT IN \
                     (SELECT endpoint_id FROM webhook_endpoint_listings) ORDER BY id",
                    &[&EndpointSource::Config.as_str()],
                )
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            for id in &unlisted {
                remove_endpoint(&transaction, id, configured.now).await?;
            }
            transaction.commit().await?;
            Ok(unlisted)
        }
        .await
        .map_err(Failure::into_store)
    }

    async fn unlist_instance(&self, instance_id: &str) -> Result<(), StoreError> {
        async {
            let mut client = self.client().await?;
            let transaction = locked(&mut client).await?;
            transaction
                .execute(
                    "DELETE FROM webhook_endpoint_listings WHERE instance_id = $1",
                    &[&instance_id],
                )
                .await?;
            transaction.commit().await?;
            Ok(())
        }
        .await
        .map_err(Failure::into_store)
    }
}

/// Creates or updates an endpoint, keeping its creation time.
async fn upsert_endpoint(
    transaction: &Transaction<'_>,
    endpoint: &EndpointRecord,
) -> Result<(), Failure> {
    let statement = transaction
        .prepare_cached(
            "INSERT INTO webhook_endpoints (id, url, signing, api_key, secret, include_events, exclude_events, \
             enabled, source, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET url = excluded.url, signing = excluded.signing, \
             api_key = excluded.api_key, secret = excluded.secret, include_events = excluded.include_events, \
             exclude_events = excluded.exclude_events, enabled = excluded.enabled, source = excluded.source",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &endpoint.id,
                &endpoint.url,
                &endpoint.signing.as_str(),
                &endpoint.api_key,
                &endpoint.secret,
                &endpoint.include_events,
                &endpoint.exclude_events,
                &endpoint.enabled,
                &endpoint.source.as_str(),
                &endpoint.created_at.0,
            ],
        )
        .await?;
    Ok(())
}

/// Deletes an endpoint, makes its pending deliveries dead (claims and all: a record made under
/// one finds it no longer pending), and forgets its listings.
async fn remove_endpoint(
    transaction: &Transaction<'_>,
    id: &str,
    now: UnixMillis,
) -> Result<(), Failure> {
    transaction.execute("DELETE FROM webhook_endpoints WHERE id = $1", &[&id]).await?;
    transaction
        .execute(
            "UPDATE webhook_deliveries SET status = 'dead', last_error = 'endpoint deleted', \
             next_attempt_at_ms = NULL, claimed_by = NULL, claim_expires_at_ms = NULL, updated_at_ms = $2 \
             WHERE endpoint_id = $1 AND status = 'pending'",
            &[&id, &now.0],
        )
        .await?;
    transaction
        .execute("DELETE FROM webhook_endpoint_listings WHERE endpoint_id = $1", &[&id])
        .await?;
    Ok(())
}
