//! Pool announcements: when a peer connects, this node gives it its pool over the pool
//! request/response protocol, to that peer alone (gossiping the pool again would send every
//! transaction to every peer each time one connects). What a peer gives us is validated on a
//! blocking worker; the transactions new to us then spread as any new transaction does.

use std::time::Instant;

use alloy_consensus::Transaction as _;
use alloy_eips::eip2718::Encodable2718;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::PeerId;

use super::Driver;
use crate::network::peers::Offence;
use crate::network::protocol::{PoolAck, PoolBatch};
use crate::network::txgossip::{accept_batch, decode_batch, Batcher};
use crate::network::Command;

impl Driver {
    /// Sends our pool to `peer` (only), in batches, senders' transactions in nonce order.
    pub(super) fn announce_pool_to(&mut self, peer: PeerId) {
        let pool = self.p.chain.pool();
        let mut txs: Vec<_> = pool.hashes().iter().filter_map(|h| pool.get(h)).collect();
        if txs.is_empty() {
            return;
        }
        txs.sort_by_key(|tx| (tx.signer(), tx.inner().nonce()));
        let mut batcher = Batcher::default();
        let mut batches = 0usize;
        for tx in &txs {
            if batcher.push(tx.inner().encoded_2718().into()) {
                self.p.swarm.behaviour_mut().pool.send_request(&peer, PoolBatch(batcher.take_message()));
                batches += 1;
            }
        }
        if !batcher.is_empty() {
            self.p.swarm.behaviour_mut().pool.send_request(&peer, PoolBatch(batcher.take_message()));
            batches += 1;
        }
        tracing::debug!(%peer, txs = txs.len(), batches, "pool given to a new peer");
    }

    /// Events of the pool protocol.
    pub(super) fn on_pool_event(&mut self, ev: request_response::Event<PoolBatch, PoolAck>) {
        match ev {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { request, channel, .. },
                ..
            } => self.on_pool_batch(peer, request, channel),
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response: PoolAck::Refused(why), .. },
                ..
            } => tracing::debug!(%peer, why, "peer refused our pool"),
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "giving our pool to a peer failed");
            }
            _ => {}
        }
    }

    fn on_pool_batch(&mut self, peer: PeerId, batch: PoolBatch, channel: ResponseChannel<PoolAck>) {
        if !self.book.admits(&peer) {
            return;
        }
        if let Some(why) = self.over_limit(peer, true) {
            let _ = self.p.swarm.behaviour_mut().pool.send_response(channel, PoolAck::Refused(why));
            return;
        }
        self.pool_limit.charge(peer, batch.0.len(), Instant::now());
        let _ = self.p.swarm.behaviour_mut().pool.send_response(channel, PoolAck::Received);
        match decode_batch(&batch.0) {
            Ok(txs) => {
                let (chain, cmd) = (self.p.chain.clone(), self.p.cmd_tx.clone());
                tokio::task::spawn_blocking(move || {
                    if let Some(offence) = accept_batch(&chain, &txs).offence {
                        let _ = cmd.blocking_send(Command::Punish { peer, offence });
                    }
                });
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "garbage pool announcement");
                self.punish(peer, Offence::Garbage);
            }
        }
    }
}
