//! Wake-ups between hosts with `LISTEN/NOTIFY`: a host that makes work due (an enqueue, a
//! woken wait) notifies the channel `stepwise_work` (`work <host>`), and every other host's
//! scheduler looks again at once instead of polling the database; a host that changes a
//! tenant's settings notifies `settings <host> <tenant>`, and the others read them again.
//!
//! Notifications are sent after the write commits, from a task that sends at most one per
//! [`NOTIFY_GAP`] however many writes asked for one: a `NOTIFY` inside each write transaction
//! would take PostgreSQL's global notification lock at every commit. A listener that loses
//! its connection reconnects and wakes its scheduler once; each time a listener starts
//! listening, every tenant's settings are read again (what changed before it listened would
//! be missed otherwise); a notification that could not be sent is sent again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::PgStore;
use crate::claims::Shared;

/// The channel hosts notify.
const CHANNEL: &str = "stepwise_work";

/// Least time between two notifications a host sends.
const NOTIFY_GAP: Duration = Duration::from_millis(2);

/// How long a lost listener connection waits before reconnecting.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl PgStore {
    /// Asks the notifier to tell the other hosts that work may be due.
    pub(crate) fn notify_work(&self) {
        self.shared.notify_wanted.store(true, Ordering::Release);
        self.shared.notifier.notify_one();
    }

    /// Asks the notifier to tell the other hosts that `tenant`'s settings changed.
    pub(crate) fn notify_settings(&self, tenant: &str) {
        self.shared
            .settings_changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_owned());
        self.shared.notifier.notify_one();
    }

    /// Starts the notifier task (once per host).
    pub(crate) fn start_notifier(&self) {
        let weak = Arc::downgrade(&self.shared);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let woken = shared.notifier.clone();
                drop(shared);
                // Wakes on a request, or now and then to see whether the store is gone.
                let _ = tokio::time::timeout(Duration::from_secs(5), woken.notified()).await;
                let Some(shared) = weak.upgrade() else { return };
                let mut payloads = Vec::new();
                if shared.notify_wanted.swap(false, Ordering::AcqRel) {
                    payloads.push(format!("work {}", shared.holder));
                }
                let tenants = std::mem::take(
                    &mut *shared
                        .settings_changed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                for tenant in tenants {
                    payloads.push(format!("settings {} {tenant}", shared.holder));
                }
                drop(shared);
                if payloads.is_empty() {
                    continue;
                }
                let sent = async {
                    let client = pool.get().await.map_err(crate::io)?;
                    for payload in &payloads {
                        client
                            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, payload])
                            .await
                            .map_err(crate::io)?;
                    }
                    Ok::<(), stepwise_store::StoreError>(())
                }
                .await;
                if let Err(e) = &sent
                    && let Some(shared) = weak.upgrade()
                {
                    // Sent again with the next notification.
                    for payload in &payloads {
                        match payload.split(' ').collect::<Vec<_>>().as_slice() {
                            ["work", _] => shared.notify_wanted.store(true, Ordering::Release),
                            ["settings", _, tenant] => {
                                shared
                                    .settings_changed
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert((*tenant).to_owned());
                            }
                            _ => {}
                        }
                    }
                    tracing::warn!(error = %e, "other hosts could not be notified; tried again");
                    // The next try comes with the next request, or the periodic look.
                    continue;
                }
                tokio::time::sleep(NOTIFY_GAP).await;
            }
        });
    }

    /// Listens for other hosts' notifications and wakes this host's scheduler for each, on a
    /// connection of its own, until the store is dropped.
    pub(crate) fn start_listener(&self) {
        let weak = Arc::downgrade(&self.shared);
        let config = self.shared.config.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = listen(&config, &weak).await {
                    tracing::warn!(error = %e, "lost the connection listening for other hosts' work; reconnecting");
                }
                if weak.upgrade().is_none() {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
                // Whatever was notified meanwhile was missed: look again, at work and at
                // every tenant's settings.
                let Some(shared) = weak.upgrade() else { return };
                shared.wake(stepwise_store::Wake::Work);
            }
        });
    }
}

/// One listening connection, until it fails (`Err`) or the store is gone (`Ok`).
async fn listen(
    config: &tokio_postgres::Config,
    weak: &Weak<Shared>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "listening connection failed");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Settings another host changed before this connection listened (since the engine read
    // them, or while a lost connection was down) are read again now.
    if let Some(shared) = weak.upgrade() {
        shared.wake(stepwise_store::Wake::AllSettings);
    }
    let mut check = tokio::time::interval(Duration::from_secs(5));
    let result = loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(payload) => {
                    let Some(shared) = weak.upgrade() else { break Ok(()) };
                    // A host's own notifications are skipped: it knows already.
                    let mut words = payload.splitn(3, ' ');
                    match (words.next(), words.next(), words.next()) {
                        (Some("work"), Some(from), None) if from != shared.holder => {
                            shared.wake(stepwise_store::Wake::Work);
                        }
                        (Some("settings"), Some(from), Some(tenant)) if from != shared.holder => {
                            shared.wake(stepwise_store::Wake::Settings(tenant.to_owned()));
                        }
                        _ => {}
                    }
                }
                None => break client.batch_execute("SELECT 1").await,
            },
            _ = check.tick() => {
                if weak.upgrade().is_none() {
                    break Ok(());
                }
            }
        }
    };
    driver.abort();
    result
}
