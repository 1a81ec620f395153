//! Reading a large result as a stream: a task walks the query's row cursor and hands
//! the rows on in chunks through a small bounded channel, so the rows in memory at
//! any time are a few chunks whatever the result's size, and a consumer that stops
//! reading (a client that went away) stops the query.

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Result;

/// Rows per chunk.
pub const CHUNK_ROWS: usize = 1024;
/// Chunks in flight between the query task and the consumer.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Chunks of rows in the query's order; an error ends the stream.
pub type Chunks<T> = BoxStream<'static, Result<Vec<T>>>;

/// The sending end of a [`Chunks`] stream, for the task that runs the query.
pub(crate) struct ChunkSender<T> {
    tx: mpsc::Sender<Result<Vec<T>>>,
}

pub(crate) fn chunk_channel<T: Send + 'static>() -> (ChunkSender<T>, Chunks<T>) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    (ChunkSender { tx }, ReceiverStream::new(rx).boxed())
}

/// Runs `query` (which builds and walks its cursor, feeding [`forward`]) on its own
/// task and returns the consumer's end.
pub(crate) fn spawn_export<T, F, Fut>(query: F) -> Chunks<T>
where
    T: Send + 'static,
    F: FnOnce(ChunkSender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = chunk_channel();
    tokio::spawn(query(tx));
    rx
}

/// Drains `rows` into `tx` in chunks of [`CHUNK_ROWS`]; an error is sent after the rows
/// before it and ends the export. Returns early when the consumer has gone.
pub(crate) async fn forward<T, S>(rows: S, tx: ChunkSender<T>)
where
    S: Stream<Item = Result<T>>,
{
    let mut rows = std::pin::pin!(rows);
    let mut out = ChunkWriter::new(tx);
    while let Some(row) = rows.next().await {
        match row {
            Ok(row) => {
                if !out.push(row).await {
                    return;
                }
            }
            Err(e) => return out.fail(e).await,
        }
    }
    out.finish().await;
}

/// Rows pushed one at a time, sent in chunks of [`CHUNK_ROWS`].
pub(crate) struct ChunkWriter<T> {
    tx: ChunkSender<T>,
    chunk: Vec<T>,
}

impl<T> ChunkWriter<T> {
    pub(crate) fn new(tx: ChunkSender<T>) -> Self {
        ChunkWriter {
            tx,
            chunk: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    /// Adds a row; `false` once the consumer has gone (stop reading).
    pub(crate) async fn push(&mut self, row: T) -> bool {
        self.chunk.push(row);
        if self.chunk.len() < CHUNK_ROWS {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_ROWS));
        self.tx.tx.send(Ok(full)).await.is_ok()
    }

    /// Sends the rows so far, then the error that ends the export.
    pub(crate) async fn fail(self, e: super::Error) {
        if !self.chunk.is_empty() && self.tx.tx.send(Ok(self.chunk)).await.is_err() {
            return;
        }
        let _ = self.tx.tx.send(Err(e)).await;
    }

    /// Sends the last rows.
    pub(crate) async fn finish(self) {
        if !self.chunk.is_empty() {
            let _ = self.tx.tx.send(Ok(self.chunk)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Error;

    #[tokio::test]
    async fn rows_arrive_in_order_in_chunks_and_an_error_ends_them() {
        let n = CHUNK_ROWS * 2 + 5;
        let rows = futures::stream::iter((0..n).map(Ok));
        let chunks: Vec<_> = spawn_export(|tx| forward(rows, tx)).collect().await;
        let sizes: Vec<usize> = chunks
            .iter()
            .map(|c| c.as_ref().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [CHUNK_ROWS, CHUNK_ROWS, 5]);
        let flat: Vec<usize> = chunks
            .into_iter()
            .flat_map(|c| c.unwrap_or_default())
            .collect();
        assert_eq!(flat, (0..n).collect::<Vec<_>>());

        let rows = futures::stream::iter(
            (0..3)
                .map(Ok)
                .chain([Err(Error::Unavailable("gone".into())), Ok(9)]),
        );
        let chunks: Vec<_> = spawn_export(|tx| forward(rows, tx)).collect().await;
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].as_ref().ok(), Some(&vec![0, 1, 2]));
        assert!(matches!(chunks[1], Err(Error::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_consumer_that_goes_away_stops_the_reader() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let rows = futures::stream::iter((0..).map(Ok::<u64, Error>));
        let mut chunks = spawn_export(|tx| async move {
            forward(rows, tx).await;
            let _ = done_tx.send(());
        });
        assert!(chunks.next().await.is_some());
        drop(chunks);
        tokio::time::timeout(std::time::Duration::from_secs(5), done_rx)
            .await
            .expect("the reader stops once nobody reads")
            .expect("reader finished");
    }
}
