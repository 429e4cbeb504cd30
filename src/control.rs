//! The control socket: the process that holds a data dir answers commands from other
//! `shipdeck` processes on the same data dir (one JSON line in, one JSON line out), so a
//! second shell can pause or abort the release a console or a `deploy` is driving.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::{Command, Engine};
use crate::model::Release;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub actor: String,
    pub command: Command,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    /// The exit code a CLI should end with.
    pub exit_code: i32,
    pub message: String,
    pub release: Option<Release>,
    /// The emergency an emergency command created or acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<Box<crate::model::Emergency>>,
}

/// Listen on the data dir's socket until the task is aborted. Called by the holder of the
/// data dir's lock, so a socket file left by a dead holder is stale and replaced.
pub fn serve(data_dir: &Path, engine: Engine) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let engine = engine.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &engine).await {
                    tracing::warn!("control socket: {e}");
                }
            });
        }
    }))
}

async fn answer(stream: UnixStream, engine: &Engine) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) if req.command.is_emergency() => match engine.execute_emergency(&req.actor, req.command).await {
            Ok(o) => Reply {
                ok: true,
                exit_code: 0,
                message: o.message,
                release: None,
                emergency: Some(Box::new(o.emergency)),
            },
            Err(e) => refused(&e),
        },
        Ok(req) => match engine.execute(&req.actor, req.command).await {
            Ok(o) => Reply { ok: true, exit_code: 0, message: o.message, release: o.release, emergency: None },
            Err(e) => refused(&e),
        },
        Err(e) => Reply {
            ok: false,
            exit_code: 2,
            message: format!("not a shipdeck request: {e}"),
            release: None,
            emergency: None,
        },
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_default();
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

fn refused(e: &crate::engine::EngineError) -> Reply {
    Reply { ok: false, exit_code: e.exit_code(), message: e.to_string(), release: None, emergency: None }
}

/// Send a command to the process holding `data_dir`; None when nobody answers there.
pub async fn send(data_dir: &Path, actor: &str, command: Command) -> Option<Reply> {
    let stream = UnixStream::connect(socket_path(data_dir)).await.ok()?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(&Request { actor: actor.to_string(), command }).ok()?;
    text.push('\n');
    write.write_all(text.as_bytes()).await.ok()?;
    let mut line = String::new();
    let timeout = std::time::Duration::from_secs(30);
    tokio::time::timeout(timeout, BufReader::new(read).read_line(&mut line)).await.ok()?.ok()?;
    serde_json::from_str(&line).ok()
}
