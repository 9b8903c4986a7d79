//! A TCP connect through the raw `wasi:sockets@0.2.12` interfaces.

use std::net::SocketAddr;
use std::time::Duration;

/// How long to wait for the handshake. A refused or denied connection fails at
/// once; this only bounds connections to addresses that never answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bindings for just the socket interfaces this probe needs, generated from
/// the project's vendored WASI packages (the ones the host implements).
#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        inline: r#"
            package tensoras:probe;

            world probe {
                import wasi:clocks/monotonic-clock@0.2.12;
                import wasi:sockets/instance-network@0.2.12;
                import wasi:sockets/tcp-create-socket@0.2.12;
                import wasi:sockets/tcp@0.2.12;
            }
        "#,
        // Dependencies first: each file is parsed against what came before.
        path: [
            "../../wit/deps/io.wit",
            "../../wit/deps/clocks.wit",
            "../../wit/deps/sockets.wit",
        ],
        world: "tensoras:probe/probe",
        generate_all,
    });
}

use bindings::wasi::clocks::monotonic_clock;
use bindings::wasi::io::poll;
use bindings::wasi::sockets::instance_network::instance_network;
use bindings::wasi::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress};
use bindings::wasi::sockets::tcp_create_socket::create_tcp_socket;

/// Opens a TCP connection to `addr` and closes it again; the error text says
/// why it failed (for example `access-denied` when the host grants no network).
pub fn connect(addr: SocketAddr) -> Result<(), String> {
    let (family, remote) = match addr {
        SocketAddr::V4(a) => {
            let [x, y, z, w] = a.ip().octets();
            (IpAddressFamily::Ipv4, IpSocketAddress::Ipv4(Ipv4SocketAddress { port: a.port(), address: (x, y, z, w) }))
        }
        SocketAddr::V6(a) => {
            let s = a.ip().segments();
            (
                IpAddressFamily::Ipv6,
                IpSocketAddress::Ipv6(Ipv6SocketAddress {
                    port: a.port(),
                    flow_info: a.flowinfo(),
                    address: (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
                    scope_id: a.scope_id(),
                }),
            )
        }
    };

    let network = instance_network();
    let socket = create_tcp_socket(family).map_err(describe)?;
    socket.start_connect(&network, remote).map_err(describe)?;

    // Sockets are non-blocking: wait for the socket or the deadline. The
    // pollables are children of the socket and timer and are declared after
    // them, so they are dropped first, as the host requires.
    let ready = socket.subscribe();
    let deadline = monotonic_clock::subscribe_duration(u64::try_from(CONNECT_TIMEOUT.as_nanos()).unwrap_or(u64::MAX));
    loop {
        match socket.finish_connect() {
            // The streams are children of the socket; they drop here, first.
            Ok((_input, _output)) => return Ok(()),
            Err(ErrorCode::WouldBlock) => {
                if poll::poll(&[&ready, &deadline]).contains(&1) {
                    return Err(format!("timed out after {} s", CONNECT_TIMEOUT.as_secs()));
                }
            }
            Err(e) => return Err(describe(e)),
        }
    }
}

/// Error text such as `connection-refused: Connection refused.`.
fn describe(e: ErrorCode) -> String {
    format!("{}: {}", e.name(), e.message())
}
