//! Issue 16: robustness as figures. The fuzz targets run briefly (`fuzz.rs`; at length through
//! `scripts/fuzz.sh`), damaged media goes through the receive path, replayed and live
//! (`receive_path.rs`), a hostile client sends 10,000 requests (`hostile/`), connections that say nothing are
//! closed (`connections.rs`), strangers send
//! DTLS, STUN and RTP to sessions' ports (`transport.rs`), 1,000 joins and leaves leave nothing
//! behind (`churn.rs`), media recovers from loss, jitter and outages (`bad_network.rs`), and the
//! dependencies' licences and sources are checked (`supply_chain.rs`).

mod bad_network;
mod churn;
mod connections;
mod fuzz;
mod hostile;
mod receive_path;
mod supply_chain;
mod transport;
