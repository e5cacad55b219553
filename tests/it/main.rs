//! fetchpar's integration tests: one test binary (so the helpers in [`util`] are compiled once),
//! one module per area. Every test starts its own servers on 127.0.0.1 and runs the real binary.

mod util;

mod core;
mod guards;
mod har;
mod hosts;
mod http2;
mod lists;
mod real_servers;
mod reliability;
mod scripting;
mod secrets;
mod server;
mod split;
mod terminal;
mod timeline;
mod timing;
mod tls_proxy;
mod transport;
