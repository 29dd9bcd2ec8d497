//! Ctrl-C / SIGTERM: one shared "interrupted" flag that long operations watch so they can abort
//! cleanly (abort uploads, stop children) instead of being dropped mid-write.

use std::sync::OnceLock;

use tokio::sync::watch;

fn channel() -> &'static (watch::Sender<bool>, watch::Receiver<bool>) {
    static CHANNEL: OnceLock<(watch::Sender<bool>, watch::Receiver<bool>)> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(false))
}

/// Starts listening for SIGINT and SIGTERM (call once from inside the runtime).
pub fn listen() {
    tokio::spawn(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = channel().0.send(true);
    });
}

/// True once an interrupt arrived.
pub fn is_interrupted() -> bool {
    *channel().1.borrow()
}

/// Resolves when an interrupt arrives.
pub async fn interrupted() {
    let mut rx = channel().1.clone();
    let _ = rx.wait_for(|v| *v).await;
}
