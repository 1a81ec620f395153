//! async-opcua's `opc.tcp` connection with TCP_NODELAY set. The library's own
//! connector leaves Nagle's algorithm on, so a small request (a Write) that follows
//! another one not yet acknowledged (a PublishRequest, which the server parks) waits
//! for the peer's delayed ACK: up to 40 ms on Linux. Everything else is the library's
//! connector: the same URL resolution, framing and transport.

use std::sync::Arc;

use opcua::client::ConnectionSource;
use opcua::client::transport::{
    Connector, OutgoingMessage, SecureChannelState, StreamConnection, StreamConnector,
    TcpTransport, TransportConfiguration,
};
use opcua::core::comms::tcp_codec::TcpCodec;
use opcua::core::comms::url::hostname_port_from_url;
use opcua::types::{DecodingOptions, EndpointDescription, Error, StatusCode};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

/// The default port of an `opc.tcp` URL without one.
const DEFAULT_PORT: u16 = 4840;

/// Direct TCP connections with TCP_NODELAY (the session builder's connection source).
pub struct NoDelaySource;

impl ConnectionSource for NoDelaySource {
    type Builder = NoDelayConnector;

    fn get_connector(&self, endpoint: &EndpointDescription) -> Result<NoDelayConnector, Error> {
        Ok(NoDelayConnector {
            endpoint_url: endpoint.endpoint_url.as_ref().to_string(),
        })
    }
}

/// Connects to one endpoint URL.
pub struct NoDelayConnector {
    endpoint_url: String,
}

async fn connect_tcp(
    endpoint_url: String,
    decoding: DecodingOptions,
) -> Result<StreamConnection<ReadHalf<TcpStream>, WriteHalf<TcpStream>>, Error> {
    let (host, port) = hostname_port_from_url(&endpoint_url, DEFAULT_PORT)
        .map_err(|e| Error::new(e, "the endpoint URL has no host and port"))?;
    let socket = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| {
            Error::new(
                StatusCode::BadCommunicationError,
                format!("connecting to {host}:{port}: {e}"),
            )
        })?;
    socket.set_nodelay(true).map_err(|e| {
        Error::new(
            StatusCode::BadCommunicationError,
            format!("setting TCP_NODELAY: {e}"),
        )
    })?;
    let (reader, writer) = tokio::io::split(socket);
    Ok(StreamConnection::new(
        FramedRead::new(reader, TcpCodec::new(decoding)),
        writer,
        endpoint_url,
    ))
}

impl Connector for NoDelayConnector {
    type Transport = TcpTransport;

    async fn connect(
        &self,
        channel: Arc<SecureChannelState>,
        outgoing_recv: tokio::sync::mpsc::Receiver<OutgoingMessage>,
        config: TransportConfiguration,
    ) -> Result<TcpTransport, Error> {
        StreamConnector::new(connect_tcp, self.endpoint_url.clone())
            .connect(channel, outgoing_recv, config)
            .await
    }

    fn default_endpoint(&self) -> EndpointDescription {
        EndpointDescription::from(self.endpoint_url.as_str())
    }
}
