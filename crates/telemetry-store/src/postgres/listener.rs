//! The listener: one connection of its own, outside the pool, that `LISTEN`s on the outbox
//! channel and wakes this process's dispatchers when another instance (or this one) commits
//! deliveries that were created or requeued.
//!
//! The connection is driven here, with `poll_message`, so that notifications come out of it.
//! When it drops, the listener reconnects with backoff, and wakes the dispatchers once it
//! listens again, since notifications sent meanwhile are lost. Polling stays the source of
//! truth: a lost notification only delays a delivery until the next poll.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::{CONNECT_TIMEOUT, OUTBOX_CHANNEL, wake};

/// The first wait before reconnecting; doubled at each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between reconnections: a restarted server is listened to again within it.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens until `stop` changes or its sender is dropped (the store closed or was dropped).
pub(super) async fn run(
    config: tokio_postgres::Config,
    outbox_changed: Arc<Notify>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen(&config, &outbox_changed, &mut stop, &mut backoff).await {
            Ended::Stopped => return,
            Ended::Lost => {}
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one connection ended.
enum Ended {
    /// The store stopped the listener.
    Stopped,
    /// The connection failed or dropped: reconnect.
    Lost,
}

/// Connects, listens, and wakes on every notification until the connection ends or the store
/// stops the listener. Resets `backoff` once listening.
async fn listen(
    config: &tokio_postgres::Config,
    outbox_changed: &Notify,
    stop: &mut watch::Receiver<()>,
    backoff: &mut Duration,
) -> Ended {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls));
    let (client, mut connection) = tokio::select! {
        connected = connect => match connected {
            Ok(Ok(connected)) => connected,
            Ok(Err(_)) | Err(_) => return Ended::Lost,
        },
        _ = stop.changed() => return Ended::Stopped,
    };
    let mut messages =
        futures_util::stream::poll_fn(move |context| connection.poll_message(context));
    let statement = format!("LISTEN {OUTBOX_CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            listened = &mut listen, if !listening => {
                if listened.is_err() {
                    return Ended::Lost;
                }
                listening = true;
                *backoff = MIN_BACKOFF;
                // What was committed while nobody listened was not notified here.
                wake(outbox_changed);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake(outbox_changed),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::Lost,
            },
            _ = stop.changed() => return Ended::Stopped,
        }
    }
}
