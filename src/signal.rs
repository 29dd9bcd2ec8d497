//! Ctrl-C / SIGTERM: one shared "interrupted" flag that long operations watch so they can abort
//! cleanly (abort uploads, stop children) instead of being dropped mid-write.

use std::sync::OnceLock;

use tokio::sync::watch;

fn channel() -> &'static (watch::Sender<u8>, watch::Receiver<u8>) {
    static CHANNEL: OnceLock<(watch::Sender<u8>, watch::Receiver<u8>)> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::channel(0))
}

/// Starts listening for SIGINT and SIGTERM (call once from inside the runtime). The handlers are
/// installed before this returns, so an early Ctrl-C is never the default "die at once". The
/// first signal asks the command to stop cleanly; a second one means "stop now".
pub fn listen() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        for _ in 0..2 {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            channel().0.send_modify(|n| *n += 1);
        }
    });
}

/// True once an interrupt arrived.
pub fn is_interrupted() -> bool {
    *channel().1.borrow() > 0
}

/// Resolves when an interrupt arrives.
pub async fn interrupted() {
    let mut rx = channel().1.clone();
    let _ = rx.wait_for(|n| *n > 0).await;
}

/// Resolves when a second interrupt arrives.
pub async fn interrupted_again() {
    let mut rx = channel().1.clone();
    let _ = rx.wait_for(|n| *n > 1).await;
}
