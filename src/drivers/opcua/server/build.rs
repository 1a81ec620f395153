//! The library's server builder for a spec: identities, endpoints, limits and the
//! node manager that holds the variables.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use opcua::crypto::SecurityPolicy;
use opcua::server::node_manager::memory::InMemoryNodeManagerBuilder;
use opcua::server::{ANONYMOUS_USER_TOKEN_ID, ServerBuilder, ServerUserToken};
use opcua::types::MessageSecurityMode;

use super::nodes::{self, DeviceNodes};
use super::{ServerError, ServerLimits, ServerSpec};

/// The address clients use for a listen address: loopback for a wildcard.
pub(super) fn connect_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The library's builder for `spec`, serving at `addr`.
pub(super) fn builder(spec: &ServerSpec, addr: SocketAddr) -> Result<ServerBuilder, ServerError> {
    let host = match addr.ip() {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    let endpoint_url = format!("opc.tcp://{addr}/");
    let mut b = ServerBuilder::new()
        .application_name(spec.application_name.as_str())
        .application_uri(spec.application_uri.as_str())
        .product_uri("urn:thermacore")
        .pki_dir(spec.pki_dir.clone())
        .create_sample_keypair(false)
        .trust_client_certs(spec.trust_client_certs)
        .host(host)
        .port(addr.port())
        .discovery_urls(vec![endpoint_url]);
    let mut token_ids: Vec<String> = Vec::new();
    if spec.anonymous {
        token_ids.push(ANONYMOUS_USER_TOKEN_ID.to_string());
    }
    for (i, (user, password)) in spec.users.iter().enumerate() {
        let id = format!("user-{i}");
        b = b.add_user_token(
            &id,
            ServerUserToken::user_pass(user.as_str(), password.as_str()),
        );
        token_ids.push(id);
    }
    for (i, cert) in spec.x509_users.iter().enumerate() {
        if !cert.exists() {
            return Err(ServerError::Certificate {
                path: cert.clone(),
                reason: "no such X.509 user certificate".into(),
            });
        }
        let id = format!("x509-{i}");
        b = b.add_user_token(&id, ServerUserToken::x509(format!("x509-user-{i}"), cert));
        token_ids.push(id);
    }
    if token_ids.is_empty() {
        return Err(ServerError::Config(
            "no identity offered (anonymous, users or X.509 users)".into(),
        ));
    }
    let ids: Vec<&str> = token_ids.iter().map(String::as_str).collect();
    let endpoints = if spec.endpoints.is_empty() {
        vec![(SecurityPolicy::None, MessageSecurityMode::None)]
    } else {
        spec.endpoints.clone()
    };
    for (policy, mode) in endpoints {
        let id = format!("{}-{mode:?}", policy.to_str()).to_lowercase();
        b = b.add_endpoint(id, ("/", policy, mode, ids.as_slice()));
    }
    apply_limits(&mut b, spec.limits);
    let (uri, variables) = (spec.namespace_uri.clone(), spec.variables.clone());
    Ok(b.with_node_manager(InMemoryNodeManagerBuilder::new(
        move |context: opcua::server::node_manager::ServerContext,
              space: &mut opcua::server::address_space::AddressSpace| {
            let ns =
                opcua::server::address_space::add_namespaces(&context, space, &[uri.as_str()])[0];
            for v in &variables {
                if let Err(reason) = nodes::insert(space, ns, v) {
                    tracing::warn!(id = %v.id, "OPC UA server: variable not added: {reason}");
                }
            }
            DeviceNodes::new(&uri, ns)
        },
    )))
}

fn apply_limits(b: &mut ServerBuilder, l: ServerLimits) {
    let limits = b.limits_mut();
    let set = |target: &mut usize, v: usize| {
        if v > 0 {
            *target = v;
        }
    };
    set(
        &mut limits.operational.max_nodes_per_read,
        l.max_nodes_per_read,
    );
    set(
        &mut limits.operational.max_nodes_per_write,
        l.max_nodes_per_write,
    );
    set(
        &mut limits.operational.max_nodes_per_browse,
        l.max_nodes_per_browse,
    );
    set(
        &mut limits.operational.max_monitored_items_per_call,
        l.max_monitored_items_per_call,
    );
    set(
        &mut limits.subscriptions.max_monitored_items_per_sub,
        l.max_monitored_items_per_sub,
    );
    set(
        &mut limits.subscriptions.max_subscriptions_per_session,
        l.max_subscriptions_per_session,
    );
    if l.refuse_subscriptions {
        limits.subscriptions.max_subscriptions_per_session = 0;
    }
}
